"""A torchrun job against the plain run with the same global batch: step losses, val AUROC, wall time.

    uv run python bench/ddp_check.py --nproc 2 --device cpu      # gloo, N CPU processes (no GPU needed)
    uv run python bench/ddp_check.py --nproc 1 --device cuda     # 1-GPU torchrun vs plain (issue 18)
    uv run python bench/ddp_check.py --nproc 4 --device cuda     # 4 GPUs

Both runs use a LayerNorm model (no BatchNorm: per-rank statistics would differ by design) without
stochastic depth, so the losses must agree step for step up to float reduction order. Prints the
largest relative difference and the two wall times (process start included) measured in this run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def records(run_dir: Path, event: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="test_vit")
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--per_rank_batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    common = ["--model", args.model, "--img_size", str(args.img_size), "--synthetic_size", "192",
              "--epochs", str(args.epochs), "--num_workers", "0", "--no_pretrained", "--drop_path_rate", "0",
              "--lr", "0.001", "--log_every", "1", "--no_mixed_precision", "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        medcls = [sys.executable, "-m", "medcls_tui", "train", *common]
        plain_s = run([*medcls, "--batch_size", str(args.per_rank_batch * args.nproc), "--output_dir",
                       str(out / "plain"), "--run_name", "plain"])
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
                     "-m", "medcls_tui", "train", *common] if args.nproc == 1 else [*medcls, "--gpus", str(args.nproc)])
        ddp_s = run([*launcher, "--batch_size", str(args.per_rank_batch), "--output_dir", str(out / "ddp"),
                     "--run_name", "ddp"])
        plain = {r["global_step"]: r["loss"] for r in records(out / "plain" / "plain", "Step")}
        ddp = {r["global_step"]: r["loss"] for r in records(out / "ddp" / "ddp", "Step")}
        assert sorted(plain) == sorted(ddp), (sorted(plain), sorted(ddp))
        worst = max(abs(ddp[s] - plain[s]) / max(abs(plain[s]), 1e-12) for s in plain)
        auroc = [(a["metrics"]["val_auroc"], b["metrics"]["val_auroc"])
                 for a, b in zip(records(out / "plain" / "plain", "EpochDone"), records(out / "ddp" / "ddp", "EpochDone"))]
    print(f"device {args.device}, {args.nproc} process(es) x batch {args.per_rank_batch} vs 1 x "
          f"{args.per_rank_batch * args.nproc}, {len(plain)} steps")
    print(f"largest relative step-loss difference: {worst:.2e}")
    print("val_auroc per epoch (plain, torchrun): " + ", ".join(f"({a:.4f}, {b:.4f})" for a, b in auroc))
    print(f"wall: plain {plain_s:.1f} s, torchrun {ddp_s:.1f} s (ratio {ddp_s / plain_s:.2f})")


if __name__ == "__main__":
    main()
