"""--compile speed-up (issue 17.3): training steps/s of the engine with and without torch.compile.

    uv run python bench/compile_speedup.py [--rounds 3] [--steps 25] [--warmup 5] [--model resnet18]
                                           [--img-size 32] [--batch 32] [--threads 2] [--device cpu]

Both sides are real one-epoch `Trainer` runs on the same in-memory phantoms, model (random init),
batch, optimizer and seed; the only difference is `compile: true`. The rate is timed from step
`--warmup` to the last step (wall clock at StepDone), so the compilation itself, which happens in
the first steps, is reported apart: "first steps" is the time from the run's start to step
`--warmup`. Rounds alternate which side goes first. Prints each round, then the median ratio
compiled / eager last.
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
from core.events import RunStarted, StepDone  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402


def flags(args, out: Path, compiled: bool) -> dict:
    return {
        "dataset": "synthetic", "synthetic_size": int(args.batch * args.steps / 0.7) + 2 * args.batch,
        "model": args.model, "img_size": args.img_size, "mode": "full_finetune", "pretrained": False,
        "epochs": 1, "max_steps_per_epoch": args.steps, "batch_size": args.batch, "lr": 1e-3,
        "warmup_epochs": 0.0, "augmentation": "none", "drop_path_rate": 0.0, "num_workers": 0,
        "device": args.device, "early_stopping": 0, "log_every": 1000, "output_dir": str(out),
        "run_name": "compiled" if compiled else "eager", "compile": compiled,
    }


def run_rate(args, out: Path, compiled: bool) -> tuple[float, float]:
    """(steps/s after the warm-up, seconds from RunStarted to step `warmup`)."""
    times: dict[int, float] = {}
    started: list[float] = []

    def on_event(e):
        if isinstance(e, StepDone):
            times[e.global_step] = time.perf_counter()
        elif isinstance(e, RunStarted):
            started.append(time.perf_counter())

    torch._dynamo.reset()  # every compiled run compiles afresh (the on-disk caches still help)
    summary = Trainer(resolve_config(flags(args, out, compiled), vram_gib=None), on_event=on_event).fit()
    if summary.get("status") != "finished":
        raise RuntimeError(f"{'compiled' if compiled else 'eager'} run ended {summary.get('status')}: "
                           f"{summary.get('error')}")
    last = max(times)
    return (last - args.warmup) / (times[last] - times[args.warmup]), times[args.warmup] - started[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the rate (compilation happens there)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if not 1 < args.warmup < args.steps - 1:
        ap.error("--warmup must be between 2 and --steps - 2")
    torch.set_num_threads(args.threads)
    print(f"compile speed-up: {args.model} {args.img_size}px batch {args.batch}, {args.steps} steps (timed after "
          f"step {args.warmup}), device {args.device}, {args.threads} torch thread(s)")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'round':>5} {'first':>9} {'eager steps/s':>14} {'compiled steps/s':>17} {'ratio':>6} "
          f"{'first steps eager/compiled (s)':>31}")
    ratios, eager_rates, compiled_rates = [], [], []
    with tempfile.TemporaryDirectory(prefix="medcls-compile-") as tmp:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            results = {c: run_rate(args, Path(tmp) / f"r{r}", c) for c in order}
            (e_rate, e_first), (c_rate, c_first) = results[False], results[True]
            ratios.append(c_rate / e_rate)
            eager_rates.append(e_rate)
            compiled_rates.append(c_rate)
            print(f"{r + 1:>5} {'eager' if not order[0] else 'compiled':>9} {e_rate:>14.2f} {c_rate:>17.2f} "
                  f"{c_rate / e_rate:>6.3f} {e_first:>15.1f} / {c_first:.1f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"median eager {statistics.median(eager_rates):.2f} steps/s, compiled "
          f"{statistics.median(compiled_rates):.2f} steps/s")
    print(f"ratio compiled/eager (median of {args.rounds} rounds): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
