"""Issue 25.6: a run folder written by the code before the restructure (main at 54b1608: flat core/,
one Trainer class) resumes on today's code, and continues exactly as an uninterrupted run of today's
code does. tests/data/old_run_54b1608 holds its config.yaml, metrics.jsonl, summary.json and last.pt
(test_convnext, linear probe, 1 epoch of 2 steps, seed 7; best.pt left out to keep the repo small:
resuming writes it again from last.pt)."""
from __future__ import annotations

import shutil

import torch

from conftest import REPO, TINY
from core.config.resolve import resolve_config
from core.runs.checkpoint import load_checkpoint
from core.training.trainer import Trainer
from medcls_tui.run_config import resolve_from_cli

OLD_RUN = REPO / "tests" / "data" / "old_run_54b1608"
FLAGS = {**TINY, "model": "test_convnext", "mode": "linear_probe", "max_steps_per_epoch": 2, "seed": 7,
         "feature_cache": False}


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in b.items():
        assert torch.equal(a[key], value), key


def test_a_checkpoint_from_before_the_restructure_resumes_bit_identically(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(OLD_RUN, runs / OLD_RUN.name)
    assert load_checkpoint(runs / OLD_RUN.name / "checkpoints" / "last.pt")["position"]["epoch"] == 1

    # today's code trains the same epoch to the same weights (behaviour did not change) ...
    fresh = Trainer(resolve_config({**FLAGS, "epochs": 1, "output_dir": str(runs), "run_name": "fresh"},
                                   vram_gib=None))
    assert fresh.fit()["status"] == "finished"
    assert_same(weights(fresh.run_dir), weights(runs / OLD_RUN.name))

    # ... and extending the old run to 2 epochs gives what extending today's run gives, bit for bit
    finals = []
    for name in (OLD_RUN.name, "fresh"):
        resolved, resume_dir = resolve_from_cli({"output_dir": str(runs), "epochs": 2}, {"retrain": name})
        summary = Trainer(resolved, resume_dir=resume_dir).fit()
        assert summary["status"] == "finished", summary.get("error")
        assert summary["epochs_completed"] == 2 and summary["global_step"] == 4
        assert (resume_dir / "checkpoints" / "best.pt").is_file()
        finals.append(weights(resume_dir))
    assert_same(*finals)
