"""Loop overhead (issue 17.1): steps/s of `core.training.trainer.Trainer` vs a minimal hand-written PyTorch loop.

    uv run python bench/loop_overhead.py [--rounds 5] [--steps 30] [--model resnet18] [--img-size 32]
                                         [--batch 32] [--threads 1] [--device cpu] [--amp]

Both sides train the same timm model (random init) on the same in-memory images (the built-in
phantoms, rendered once as uint8), at the same batch, with AdamW at the same LR and the same AMP
setting, in the same process and thread count. The hand-written loop is the least a real loop does:
index a batch of uint8 images, move and normalise them on the device, forward, cross-entropy,
backward, step; it never reads the loss back. The Trainer side is the real engine (its data loader,
events, LR schedule, loss/accuracy bookkeeping, checkpoints at the epoch end) on a one-epoch run.

Each side's rate is timed between its step `--warmup` and its last step, so model creation, data
rendering, validation and checkpoints are excluded; on CUDA the hand loop synchronises at both ends.
The sides alternate which goes first in each round. Prints each round, then the median ratio
Trainer / hand loop last (target >= 0.97).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.data import load_dataset  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402
from core.events import StepDone  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402


def flags(args, out: Path) -> dict:
    n_train_needed = args.batch * args.steps
    return {
        "dataset": "synthetic", "synthetic_size": int(n_train_needed / 0.7) + 2 * args.batch,
        "model": args.model, "pretrained": False, "img_size": args.img_size, "mode": "full_finetune",
        "drop_path_rate": args.drop_path,
        "epochs": 1, "max_steps_per_epoch": args.steps, "batch_size": args.batch, "grad_accum_steps": 1,
        "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.0, "augmentation": "none",
        "num_workers": 0, "device": args.device, "mixed_precision": args.amp, "log_every": 1000,
        "early_stopping": 0, "output_dir": str(out), "channels_last": args.channels_last,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_rate(args, out: Path) -> float:
    """Steps/s of the engine between step `warmup` and its last step (wall clock at StepDone)."""
    times: dict[int, float] = {}

    def on_event(e):
        if isinstance(e, StepDone):
            times[e.global_step] = time.perf_counter()

    summary = Trainer(resolve_config(flags(args, out), vram_gib=None), on_event=on_event).fit()
    if summary.get("status") != "finished":
        raise RuntimeError(f"trainer run ended {summary.get('status')}: {summary.get('error')}")
    last = max(times)
    return (last - args.warmup) / (times[last] - times[args.warmup])


def hand_rate(args, images: torch.Tensor, targets: torch.Tensor, num_classes: int, mean, std) -> float:
    """Steps/s of the minimal loop, same window as the Trainer's."""
    import timm

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False, num_classes=num_classes,
                              drop_path_rate=args.drop_path).to(device)
    amp_dtype = torch.bfloat16 if (args.amp and device.type == "cuda") else None
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=device).view(1, -1, 1, 1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    stamps = []
    for step in range(args.steps):
        idx = order[step * args.batch:(step + 1) * args.batch]
        x = images[idx].to(device, non_blocking=True).float().div_(255.0).expand(-1, 3, -1, -1)
        x = (x - mean) / std
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = targets[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else torch.autocast("cpu", enabled=False):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step + 1 == args.warmup or step + 1 == args.steps:
            sync(device)
            stamps.append(time.perf_counter())
    return (args.steps - args.warmup) / (stamps[1] - stamps[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the timing window")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth (both sides; the tip for a "
                    "small CNN is 0.1)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (both sides); CPU runs in fp32")
    ap.add_argument("--channels-last", action="store_true", default=None)
    args = ap.parse_args()
    if not 0 < args.warmup < args.steps - 1:
        ap.error("--warmup must be between 1 and --steps - 2")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="medcls-loop-") as tmp:
        out = Path(tmp)
        cfg = resolve_config(flags(args, out), vram_gib=None).config
        bundle = load_dataset(cfg)
        train = bundle.train
        images = torch.from_numpy(np.stack([train.image(i) for i in range(len(train))]))[:, None]
        targets = torch.as_tensor(np.asarray(train.targets), dtype=torch.int64)
        if len(images) < args.batch * args.steps:
            raise SystemExit(f"only {len(images)} training images for {args.steps} steps of {args.batch}")
        if args.device.startswith("cuda"):
            images = images.pin_memory()
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        print(f"loop overhead: {args.model} {args.img_size}px batch {args.batch} AdamW, {args.steps} steps "
              f"(timed after step {args.warmup}), device {args.device}, amp {'bf16' if args.amp else 'off'}, "
              f"{args.threads} torch thread(s)")
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'round':>5} {'first':>8} {'trainer steps/s':>16} {'hand steps/s':>13} {'ratio':>7}")
        ratios, t_rates, h_rates = [], [], []
        for r in range(args.rounds):
            first = "trainer" if r % 2 == 0 else "hand"
            results = {}
            for side in (("trainer", "hand") if first == "trainer" else ("hand", "trainer")):
                if side == "trainer":
                    results[side] = trainer_rate(args, out / f"r{r}")
                else:
                    results[side] = hand_rate(args, images, targets, bundle.num_classes,
                                              IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
            ratio = results["trainer"] / results["hand"]
            ratios.append(ratio)
            t_rates.append(results["trainer"])
            h_rates.append(results["hand"])
            print(f"{r + 1:>5} {first:>8} {results['trainer']:>16.2f} {results['hand']:>13.2f} {ratio:>7.3f}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"median trainer {statistics.median(t_rates):.2f} steps/s, hand loop {statistics.median(h_rates):.2f} steps/s")
        print(f"ratio trainer/hand (median of {args.rounds} rounds): {statistics.median(ratios):.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
