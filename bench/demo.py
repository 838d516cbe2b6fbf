"""Wall time and final val_auroc of the demo preset (issue 3 target: < 2 min, val_auroc >= 0.85 on 2 CPU cores).

    uv run python bench/demo.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.training.trainer import Trainer  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        resolved = resolve_config({"output_dir": out}, preset="demo")
        summary = Trainer(resolved).fit()
        wall = time.perf_counter() - t0
    print(f"demo preset: status {summary['status']}, {summary['epochs_completed']} epochs, "
          f"wall {wall:.1f}s, final val_auroc {summary['val_auroc']:.4f}, best {summary['best_value']:.4f} "
          f"at epoch {summary['best_epoch']}")
    print(f"targets: wall < 120s -> {'OK' if wall < 120 else 'MISSED'}; "
          f"val_auroc >= 0.85 -> {'OK' if summary['val_auroc'] >= 0.85 else 'MISSED'}")


if __name__ == "__main__":
    main()
