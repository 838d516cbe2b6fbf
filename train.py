"""Seed-compatible entry point: `uv run python train.py --model vit_small_patch16 --mode linear_probe ...`.

A thin shim: the flags are exactly those of `medcls train` (spec/TRAINING_TIPS.md spellings).
"""
import sys

from medcls_tui.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
