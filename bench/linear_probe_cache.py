"""Cached linear probe (issue 17.2): time per epoch and final metric with and without the feature cache.

    uv run python bench/linear_probe_cache.py [--model resnet18] [--epochs 3] [--img-size 224]
                                              [--batch 32] [--threads 2] [--data DIR]

Three linear-probe runs of the same model on the NIH ChestX-ray14 fixture (multi-label, 224 px,
random-init backbone: no weights are downloaded here), same seed and batches:
  off     feature_cache false: the frozen backbone runs on every batch of every epoch (and on val);
  cold    feature_cache true, empty cache: the first epoch computes and stores the features;
  warm    a later run with the same key: the features are read from disk, the backbone never runs.
Per-epoch time is the gap between consecutive EpochDone events (training + validation), so epochs
after the first are compared; the first epoch and the set-up are reported separately. The ratio
off / cold per epoch after the first is printed last (target >= 20x), with the final val_auroc of
each run (target: within 0.5 points).

The fixture is found as the tests find it (../shared/fixtures next to the repository) or through
MEDCLS_FIXTURES; the pixel and feature caches go to a temporary folder.
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

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.training.trainer import Trainer  # noqa: E402
from core.events import EpochDone, RunStarted  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402


def nih_fixture(explicit: str | None) -> Path:
    root = Path(explicit) if explicit else Path(os.environ.get("MEDCLS_FIXTURES", REPO.parent / "shared" / "fixtures"))
    nih = root if (root / "Data_Entry_2017_v2020.csv").is_file() else root / "nih_chestxray14"
    if not (nih / "Data_Entry_2017_v2020.csv").is_file():
        raise SystemExit(f"NIH fixture not found under {root} (set MEDCLS_FIXTURES or --data)")
    return nih


def run(args, data: Path, work: Path, name: str, feature_cache: bool) -> dict:
    flags = {
        "dataset": "nih", "data_dir": str(data), "cache_dir": str(work / "cache"), "model": args.model,
        "mode": "linear_probe", "augmentation": "none", "img_size": args.img_size, "epochs": args.epochs,
        "batch_size": args.batch, "num_workers": 0, "device": args.device, "early_stopping": 0,
        "output_dir": str(work / "runs"), "run_name": name, "feature_cache": feature_cache, "seed": 0,
    }
    marks: list[float] = []
    started = time.perf_counter()

    def on_event(e):
        if isinstance(e, RunStarted):
            marks.append(time.perf_counter())
        elif isinstance(e, EpochDone):
            marks.append(time.perf_counter())

    summary = Trainer(resolve_config(flags, vram_gib=None), on_event=on_event).fit()
    if summary.get("status") != "finished":
        raise RuntimeError(f"{name}: {summary.get('status')} {summary.get('error')}")
    epochs = [b - a for a, b in zip(marks, marks[1:])]
    return {"setup": marks[0] - started, "first": epochs[0], "later": epochs[1:],
            "auroc": summary["val_auroc"], "total": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", help="NIH folder (default: the fixture)")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (epochs after the first are compared)")
    torch.set_num_threads(args.threads)
    data = nih_fixture(args.data)
    print(f"linear probe cache: {args.model} {args.img_size}px, NIH fixture {data}, {args.epochs} epochs, "
          f"batch {args.batch}, device {args.device}, {args.threads} torch thread(s)")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="medcls-probe-") as tmp:
        work = Path(tmp)
        results = {}
        for name, cached in (("cold", True), ("off", False), ("warm", True)):
            results[name] = r = run(args, data, work, name, cached)
            print(f"{name:>5}: setup {r['setup']:.2f} s, first epoch {r['first']:.2f} s, later epochs "
                  f"{', '.join(f'{t:.3f}' for t in r['later'])} s, val_auroc {r['auroc']:.4f}, "
                  f"total {r['total']:.1f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    per_epoch = {k: statistics.median(v["later"]) for k, v in results.items()}
    gap = max(abs(results[k]["auroc"] - results["off"]["auroc"]) for k in ("cold", "warm")) * 100
    print(f"warm run vs cold run, set-up + first epoch: {results['warm']['setup'] + results['warm']['first']:.2f} s "
          f"vs {results['cold']['setup'] + results['cold']['first']:.2f} s")
    print(f"val_auroc: off {results['off']['auroc']:.4f}, cold {results['cold']['auroc']:.4f}, warm "
          f"{results['warm']['auroc']:.4f}; largest gap {gap:.3f} points (target <= 0.5)")
    print(f"per epoch after the first: off {per_epoch['off']:.3f} s, cached {per_epoch['cold']:.4f} s; "
          f"ratio off/cached {per_epoch['off'] / per_epoch['cold']:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
