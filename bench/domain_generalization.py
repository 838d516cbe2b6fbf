"""Leave-one-domain-out on the built-in phantoms: ERM vs mixup vs XDomainMix vs PipMix vs both.

For every scanner domain d and seed s, train on the other scanners and report the AUROC on d
(never seen in training; the engine's val split is the held-out domain, and the last epoch
counts, so nothing is selected on the target domain). Prints mean +- sd over seeds per held-out
domain and of the domain average, and each method's training time relative to ERM (time spent
in training steps only; evaluation and data rendering are the same for every method).

    uv run python bench/domain_generalization.py            # the RESULTS.md table (about 50 min on 2 shared CPU cores)
    uv run python bench/domain_generalization.py --quick    # 1 seed, 2 epochs: a smoke run

Torch runs single-threaded: on a shared 2-core machine two OpenMP threads stall whenever another
process holds a core, which makes step times (and the time ratios) erratic.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import register_dataset  # noqa: E402
from core.data.base import ArrayTable, DatasetBundle  # noqa: E402
from core.data.synthetic import MULTICLASS, SCANNERS, render_phantoms  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402
from core.events import StepDone  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402

METHODS = {
    "ERM": {"augmentation": "standard"},
    "mixup (cross-domain)": {"augmentation": "mixup", "mixup_cross_domain": True},
    "XDomainMix": {"augmentation": "xdomainmix"},
    "PipMix": {"augmentation": "pipmix"},
    "XDomainMix+PipMix": {"augmentation": "xdomainmix+pipmix"},
}


def register_holdout_datasets() -> None:
    """`synthetic_holdout<d>`: the phantom set with scanner d as the val split and the rest as train."""
    for held_out in range(len(SCANNERS)):
        def build(config, progress, held_out=held_out) -> DatasetBundle:
            size = config.img_size or 64
            images, targets, domains, _ = render_phantoms(config.synthetic_size, size, config.seed, "multiclass")
            ids = [f"phantom_{i:05d}" for i in range(len(images))]
            full = ArrayTable(images, targets, domains, ids=ids, patients=ids)
            return DatasetBundle(
                name=f"synthetic_holdout{held_out}", classes=list(MULTICLASS), multi_label=False,
                train=full.subset(np.flatnonzero(domains != held_out)),
                val=full.subset(np.flatnonzero(domains == held_out)),
                domain_names=[s[0] for s in SCANNERS],
                notes=[f"leave-one-domain-out: {SCANNERS[held_out][0]} held out"])

        register_dataset(f"synthetic_holdout{held_out}")(build)


def run_once(method: str, held_out: int, seed: int, args, out: str) -> tuple[float, float]:
    """(held-out AUROC after the last epoch, seconds spent in training steps)."""
    flags = {"dataset": "synthetic", "model": args.model, "img_size": args.img_size,
             "synthetic_size": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
             "num_workers": 0, "seed": seed, "output_dir": out, "early_stopping": 0,
             "run_name": f"{method.split()[0].replace('+', '-')}_{held_out}_{seed}", "xdm_warmup_steps": args.warmup_steps,
             "xdm_tau_step_every": args.tau_every, **METHODS[method]}
    config = resolve_config(flags, vram_gib=None).config.model_copy(update={"dataset": f"synthetic_holdout{held_out}"})
    last = [time.perf_counter()]
    train_s = [0.0]

    def on_event(event) -> None:
        now = time.perf_counter()
        if isinstance(event, StepDone):
            train_s[0] += now - last[0]
        last[0] = now

    summary = Trainer(config, on_event=on_event).fit()
    if summary["status"] != "finished":
        raise RuntimeError(f"{method} held-out {held_out} seed {seed}: {summary.get('error')}")
    return float(summary["val_auroc"]), train_s[0]


def step_cost(args, rounds: int = 5, steps: int = 10) -> dict[str, float]:
    """Median seconds per optimizer step of each method on a fixed batch, methods interleaved per round.

    Isolates the per-step cost (XDomainMix after its warm-up) from data, evaluation and machine noise.
    """
    from core.augment import build_strategy
    from core.config import TrainConfig
    from core.training.losses import SoftTargetCrossEntropy
    from core.models.build import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g)
    y = torch.randint(0, 4, (args.batch_size,), generator=g)
    d = torch.randint(0, 3, (args.batch_size,), generator=g)
    setups = {}
    for method, extra in METHODS.items():
        torch.manual_seed(0)
        model = build_model(args.model, 4, "full_finetune", img_size=args.img_size)
        cfg = TrainConfig(**{k: v for k, v in extra.items()}, xdm_warmup_steps=0)
        setups[method] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), build_strategy(cfg, 4, 4, False))
    crit = SoftTargetCrossEntropy(4)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(rounds + 1):
        for method, (model, opt, strategy) in setups.items():
            for i in range(steps):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss, _ = strategy.training_loss(model, crit, x, y, d, 1000 + i)
                loss.backward()
                opt.step()
                if r > 0:  # round 0 warms up allocators and lazy modules
                    times[method].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=600, help="phantoms per run (all 4 scanners)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--img_size", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup_steps", type=int, default=None, help="XDomainMix ERM warm-up (default: 1/3 of the steps)")
    parser.add_argument("--tau_every", type=int, default=10)
    parser.add_argument("--domains", default="0,1,2,3", help="held-out scanners to run")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 2 held-out domains")
    parser.add_argument("--step-cost-only", action="store_true",
                        help="only the per-step cost of each method on a fixed batch (about a minute)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.domains = 1, 2, "1,3"
    torch.set_num_threads(1)
    if args.step_cost_only:
        cost = step_cost(args)
        print(f"{args.model} @ {args.img_size}px, batch {args.batch_size}: median seconds per step (after warm-up)")
        for method, secs in cost.items():
            print(f"  {method:<22} {secs * 1000:7.1f} ms  {secs / cost['ERM']:.2f}x ERM")
        return
    held = [int(d) for d in args.domains.split(",")]
    train_images = args.images * 3 // 4
    if args.warmup_steps is None:
        args.warmup_steps = max(1, (train_images // args.batch_size) * args.epochs // 3)
    register_holdout_datasets()
    print(f"{args.model} @ {args.img_size}px, {args.images} phantoms, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.seeds} seeds; XDomainMix warm-up {args.warmup_steps} steps, tau step every {args.tau_every}")
    auroc = {m: {d: [] for d in held} for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    with tempfile.TemporaryDirectory() as out:
        for seed in range(args.seeds):
            for d in held:
                for method in METHODS:  # interleaved, so machine load hits every method alike
                    auc, secs = run_once(method, d, seed, args, out)
                    auroc[method][d].append(auc)
                    seconds[method] += secs
                    print(f"  seed {seed} held-out {SCANNERS[d][0]:<10} {method:<22} AUROC {auc:.3f}  train {secs:6.1f}s",
                          flush=True)
    names = [SCANNERS[d][0].replace("scanner_", "") for d in held]
    print()
    print("| method | " + " | ".join(f"held-out {n}" for n in names) + " | mean over domains | time / ERM |")
    print("|---|" + "---|" * (len(held) + 2))
    for method in METHODS:
        per_seed_avg = [statistics.mean(auroc[method][d][s] for d in held) for s in range(args.seeds)]
        cells = [fmt(auroc[method][d]) for d in held]
        ratio = seconds[method] / seconds["ERM"] if seconds["ERM"] > 0 else math.nan
        print(f"| {method} | " + " | ".join(cells) + f" | **{fmt(per_seed_avg)}** | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
