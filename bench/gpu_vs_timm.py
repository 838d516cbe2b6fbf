"""GPU against timm (issue 17.5): training img/s of medcls vs a loop built the way timm's train.py builds it.

    uv run python bench/gpu_vs_timm.py                        # GPU box: resnet50 + vit_small, 224 px, bf16
    uv run python bench/gpu_vs_timm.py --device cpu --img-size 64 --batch 4 --steps 4 --warmup 1 --rounds 1

Same model, image size, batch, optimizer (AdamW, lr 1e-3, wd 0.05), AMP (bf16 autocast on CUDA, off
on CPU) and the same synthetic images (the built-in phantoms, rendered once as uint8) on both sides:
  medcls  core.training.trainer.Trainer, one epoch of --steps (its loader, events, bookkeeping, channels_last
          for CNNs on CUDA by default);
  timm    timm.create_model, timm.optim.create_optimizer_v2, native torch.autocast, channels_last for
          CNNs, the batch normalised on the device (timm's prefetcher does the same), loss.backward,
          optimizer.step: the core of timm's train.py (the script itself is not in timm's wheel).
Each side is timed from its step --warmup to its last step (CUDA synchronised at both ends).
The sides alternate order per round; img/s medians and the ratio medcls / timm are printed last
(target >= 1.0). On CUDA the device utilisation (when pynvml is installed) and the peak memory of
each side are printed too.
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
from core.models.build import model_family  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402


def flags(args, model: str, out: Path) -> dict:
    # layer_decay 1.0 (none) for transformers, as timm's train.py without --layer-decay; CNNs reject the key
    plain = {"layer_decay": 1.0} if model_family(model) != "cnn" else {}
    return {**plain,
        "dataset": "synthetic", "synthetic_size": int(args.batch * args.steps / 0.7) + 2 * args.batch,
        "model": model, "img_size": args.img_size, "mode": "full_finetune", "drop_path_rate": 0.0,
        "epochs": 1, "max_steps_per_epoch": args.steps, "batch_size": args.batch,
        "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 0.0, "augmentation": "none", "num_workers": 0,
        "device": args.device, "mixed_precision": args.device != "cpu", "amp_dtype": "bf16",
        "log_every": 1000, "early_stopping": 0, "output_dir": str(out),
    }


def utilisation() -> str:
    try:
        return f"{torch.cuda.utilization()}%"
    except Exception:  # noqa: BLE001 - pynvml missing or no device
        return "n/a"


def medcls_rate(args, model: str, out: Path) -> tuple[float, str]:
    times: dict[int, float] = {}
    util = []

    def on_event(e):
        if isinstance(e, StepDone):
            times[e.global_step] = time.perf_counter()
            if e.global_step == args.steps - 1 and args.device != "cpu":
                util.append(utilisation())

    if args.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    summary = Trainer(resolve_config(flags(args, model, out), vram_gib=None), on_event=on_event).fit()
    if summary.get("status") != "finished":
        raise RuntimeError(f"medcls run ended {summary.get('status')}: {summary.get('error')}")
    last = max(times)
    rate = (last - args.warmup) * args.batch / (times[last] - times[args.warmup])
    return rate, (util[0] if util else "n/a")


def timm_rate(args, model_name: str, images: torch.Tensor, targets: torch.Tensor, num_classes: int) -> tuple[float, str]:
    import timm
    from timm.optim import create_optimizer_v2

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, img_size=args.img_size) \
        if model_family(model_name) == "vit" else timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    model.to(device)
    channels_last = device.type == "cuda" and model_family(model_name) in ("cnn", "convnext")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1) * 255
    criterion = torch.nn.CrossEntropyLoss().to(device)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stamps, util = [], "n/a"
    for step in range(args.steps):
        idx = order[step * args.batch:(step + 1) * args.batch]
        x = images[idx].to(device, non_blocking=True).expand(-1, 3, -1, -1).float().sub_(mean).div_(std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = targets[idx].to(device, non_blocking=True)
        with amp:
            loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 == args.steps - 1 and device.type == "cuda":
            util = utilisation()
        if step + 1 in (args.warmup, args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
    return (args.steps - args.warmup) * args.batch / (stamps[1] - stamps[0]), util


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "vit_small_patch16_224"])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if not 0 < args.warmup < args.steps:
        ap.error("--warmup must be between 1 and --steps - 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu (and small --img-size/--batch/--steps)")
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
    print(f"gpu vs timm: {args.img_size}px batch {args.batch}, {args.steps} steps (timed after {args.warmup}), "
          f"device {args.device} ({gpu}), amp {'bf16' if args.device != 'cpu' else 'off'}")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    summary = []
    with tempfile.TemporaryDirectory(prefix="medcls-vs-timm-") as tmp:
        out = Path(tmp)
        for model in args.models:
            cfg = resolve_config(flags(args, model, out), vram_gib=None).config
            bundle = load_dataset(cfg)
            train = bundle.train
            images = torch.from_numpy(np.stack([train.image(i) for i in range(len(train))]))[:, None]
            targets = torch.as_tensor(np.asarray(train.targets), dtype=torch.int64)
            if args.device != "cpu":
                images = images.pin_memory()
            ratios, ours, theirs = [], [], []
            for r in range(args.rounds):
                order = ("medcls", "timm") if r % 2 == 0 else ("timm", "medcls")
                got = {}
                for side in order:
                    if side == "medcls":
                        got[side] = medcls_rate(args, model, out / f"{model}_{r}")
                    else:
                        got[side] = timm_rate(args, model, images, targets, bundle.num_classes)
                    if args.device != "cpu":
                        got[side] += (torch.cuda.max_memory_allocated() / 2**30,)
                ours.append(got["medcls"][0])
                theirs.append(got["timm"][0])
                ratios.append(got["medcls"][0] / got["timm"][0])
                extra = ""
                if args.device != "cpu":
                    extra = (f"  util medcls {got['medcls'][1]} timm {got['timm'][1]}, peak GiB medcls "
                             f"{got['medcls'][2]:.1f} timm {got['timm'][2]:.1f}")
                print(f"{model} round {r + 1}: medcls {got['medcls'][0]:.1f} img/s, timm {got['timm'][0]:.1f} img/s, "
                      f"ratio {ratios[-1]:.3f}{extra}", flush=True)
            summary.append((model, statistics.median(ours), statistics.median(theirs), statistics.median(ratios)))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    for model, a, b, ratio in summary:
        print(f"{model}: medcls {a:.1f} img/s, timm-style {b:.1f} img/s, ratio medcls/timm {ratio:.3f} (target >= 1.0)")


if __name__ == "__main__":
    main()
