"""The mix strategies inside real (tiny) engine runs: notes, multi-label, exact resume."""
from __future__ import annotations

import pytest
import torch
import yaml

from core.runs.checkpoint import load_checkpoint
from core.training.trainer import Trainer
from core.events import Control, RunStarted, StepDone, TrainingWarning
from core.config.resolve import resolve_config


def run(flags, **kwargs):
    events = []
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, **kwargs)
    return trainer, trainer.fit(), events


@pytest.mark.parametrize("aug,multi_label", [("xdomainmix", True), ("pipmix", False)])
def test_runs_finish_and_notes_reach_the_user(tiny_flags, aug, multi_label):
    flags = {**tiny_flags, "epochs": 1, "augmentation": aug, "xdm_warmup_steps": 1, "multi_label": multi_label}
    trainer, summary, events = run(flags)
    assert summary["status"] == "finished", summary.get("error")
    notes = next(e for e in events if isinstance(e, RunStarted)).notes
    if aug == "xdomainmix":
        assert any("XDomainMix: ERM warm-up for 1 steps" in n for n in notes)
        assert trainer.strategy.domain_head.linear.in_features == 512  # resnet18 feature channels
    assert not [e for e in events if isinstance(e, TrainingWarning) and "warm-up" in e.message]


def test_xdomainmix_warm_up_longer_than_the_run_is_reported(tiny_flags):
    """The default 3000-step warm-up on a short run would silently train plain ERM."""
    flags = {**tiny_flags, "epochs": 1, "augmentation": "xdomainmix", "model": "test_resnet"}
    trainer, summary, events = run(flags)
    (warning,) = [e for e in events if isinstance(e, TrainingWarning) and "warm-up" in e.message]
    assert f"ERM warm-up (3000 steps) is as long as the whole run ({trainer.total_steps} steps)" in warning.message
    assert warning.kind == "config" and "set xdm_warmup_steps below" in warning.message
    logged = (trainer.run_dir / "metrics.jsonl").read_text()
    assert "no feature is ever mixed" in logged  # in the run's log, not only on screen


@pytest.mark.slow  # ~10 s on an idle 2-core machine, a minute when it is shared
def test_xdomainmix_pipmix_resume_is_exact(tiny_flags):
    """Domain head, its optimizer and the mix draws (global RNG) all resume exactly."""
    flags = {**tiny_flags, "epochs": 2, "augmentation": "xdomainmix+pipmix", "xdm_warmup_steps": 2,
             "xdm_tau_step_every": 2}
    full, full_summary, _ = run({**flags, "run_name": "full"})
    control = Control()

    def stop(e):
        if isinstance(e, StepDone) and e.global_step == 6:  # inside epoch 2, after the warm-up
            control.request_stop()

    part = Trainer(resolve_config({**flags, "run_name": "part"}, vram_gib=None), on_event=stop, control=control)
    assert part.fit()["status"] == "stopped"
    base = yaml.safe_load((part.run_dir / "config.yaml").read_text())
    base = {k: v for k, v in base.items() if k not in ("name", "group", "description")}
    summary = Trainer(resolve_config({}, base=base, vram_gib=None), resume_dir=part.run_dir).fit()
    assert summary["status"] == "finished" and summary["global_step"] == full_summary["global_step"]
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(part.run_dir / "checkpoints" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["strategy_modules"][0]["linear.weight"], b["strategy_modules"][0]["linear.weight"])
    assert summary["val_loss"] == full_summary["val_loss"]
