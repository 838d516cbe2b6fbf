"""Real (tiny) training runs: run folder, events, control, exact resume."""
from __future__ import annotations

import json
import threading

import pytest
import torch
import yaml

from core.runs.checkpoint import load_checkpoint
from core.training.trainer import Trainer
from core.events import (CheckpointSaved, Control, EarlyStopState, EpochDone, RunFinished, RunStarted,
                         StatusChanged, StepDone)
from core.config.resolve import resolve_config
from core.runs.folder import list_runs, read_metrics

SUMMARY_KEYS = {"status", "epochs_completed", "best_epoch", "monitor", "best_value", "val_loss", "val_auroc",
                "val_acc", "val_auroc_per_class"}


def run(flags, **kwargs):
    events = []
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, **kwargs)
    summary = trainer.fit()
    return trainer, summary, events


def test_run_folder_summary_and_events(tiny_flags):
    trainer, summary, events = run({**tiny_flags, "run_name": "t1"})
    d = trainer.run_dir
    assert d.name == "t1" and (d / "config.yaml").is_file()
    assert (d / "checkpoints" / "last.pt").is_file() and (d / "checkpoints" / "best.pt").is_file()
    on_disk = json.loads((d / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk) and on_disk == summary
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2
    assert set(summary["val_auroc_per_class"]) == {"Normal", "Effusion", "Nodule", "Opacity"}
    assert 0.0 <= summary["val_acc"] <= 1.0 and summary["val_loss"] > 0
    kinds = [type(e) for e in events]
    assert kinds.index(RunStarted) < kinds.index(StepDone) < kinds.index(EpochDone) < kinds.index(RunFinished)
    assert sum(k is EpochDone for k in kinds) == 2 and any(k is EarlyStopState for k in kinds)
    records = read_metrics(d)
    assert [r["epoch"] for r in records if r["event"] == "EpochDone"] == [1, 2]
    # config.yaml is itself a valid preset that reproduces the run.
    again = resolve_config({}, preset=str(d / "config.yaml"), vram_gib=None).config
    assert again == trainer.cfg
    assert list_runs(tiny_flags["output_dir"])[0].status == "finished"


def test_multilabel_run_reports_per_class_auroc(tiny_flags):
    _, summary, _ = run({**tiny_flags, "multi_label": True, "epochs": 1})
    assert summary["status"] == "finished" and summary["val_acc"] is None
    assert len(summary["val_auroc_per_class"]) == 5


def test_stop_saves_checkpoint_and_summary(tiny_flags):
    control = Control()

    def on_event(e):
        if isinstance(e, StepDone) and e.global_step == 3:
            control.request_stop()

    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 3}, vram_gib=None), on_event=on_event, control=control)
    summary = trainer.fit()
    assert summary["status"] == "stopped" and summary["global_step"] == 3
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    assert state["position"]["global_step"] == 3 and control.finished.is_set()


def test_pause_blocks_the_loop_until_resume(tiny_flags):
    control = Control()
    seen = []  # event kinds in order; "resume" marks when the test resumed
    paused = threading.Event()

    def on_event(e):
        if isinstance(e, StepDone):
            seen.append(("step", e.global_step))
            if e.global_step == 2 and not control.paused and ("resume",) not in seen:
                control.pause()
        elif isinstance(e, StatusChanged):
            seen.append((e.status,))
            if e.status == "paused":
                paused.set()

    trainer = Trainer(resolve_config(tiny_flags, vram_gib=None), on_event=on_event, control=control)
    thread = threading.Thread(target=trainer.fit)
    thread.start()
    try:
        _wait_until(lambda: paused.is_set() or control.finished.is_set())
        assert paused.is_set() and not control.finished.is_set(), "the loop did not pause"
        # The loop blocks in Control.wait_while_paused: no step, checkpoint or end while paused.
        _wait_until(lambda: _blocked_in(thread, "wait_while_paused"))
        assert not control.finished.is_set() and trainer.pos.global_step == 2
        seen.append(("resume",))
        control.resume()
        assert control.finished.wait(300)
    finally:
        control.request_stop()
        thread.join()
    assert trainer.status == "finished"
    i = seen.index(("paused",))
    assert seen[i - 1] == ("step", 2) and seen[i + 1] == ("resume",) and seen[i + 2] == ("running",)
    assert seen[i + 3] == ("step", 3)


def _blocked_in(thread: threading.Thread, function: str) -> bool:
    import sys

    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def _wait_until(predicate, timeout: float = 300.0) -> None:
    """Poll a condition another thread will make true (the bound only catches a broken condition)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.01)


def test_save_now_writes_checkpoint_mid_epoch(tiny_flags):
    control = Control()
    saved = []

    def on_event(e):
        if isinstance(e, StepDone) and e.global_step == 1:
            control.save_now()
        if isinstance(e, CheckpointSaved):
            saved.append(e)

    Trainer(resolve_config({**tiny_flags, "epochs": 1}, vram_gib=None), on_event=on_event, control=control).fit()
    assert saved[0].reason == "save_now" and saved[0].global_step == 1


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("extra", [{}, {"mixup_alpha": 0.4, "grad_accum_steps": 2, "drop_path_rate": 0.1}])
def test_interrupted_then_resumed_run_matches_uninterrupted(tiny_flags, extra):
    flags = {**tiny_flags, "epochs": 3, **extra}
    full, full_summary, _ = run({**flags, "run_name": "full"})

    control = Control()

    def stop_mid_epoch(e):
        if isinstance(e, StepDone) and e.global_step == 4:  # inside epoch 2
            control.request_stop()

    part = Trainer(resolve_config({**flags, "run_name": "part"}, vram_gib=None), on_event=stop_mid_epoch,
                   control=control)
    assert part.fit()["status"] == "stopped"
    base = yaml.safe_load((part.run_dir / "config.yaml").read_text())
    base = {k: v for k, v in base.items() if k not in ("name", "group", "description")}
    resumed = Trainer(resolve_config({}, base=base, vram_gib=None), resume_dir=part.run_dir)
    summary = resumed.fit()
    assert summary["status"] == "finished" and summary["global_step"] == full_summary["global_step"]
    a, b = weights(full.run_dir), weights(part.run_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from uninterrupted run"
    assert summary["val_loss"] == pytest.approx(full_summary["val_loss"], abs=0, rel=0)


def test_linear_probe_caches_features_and_freezes_backbone(tiny_flags):
    trainer, summary, events = run({**tiny_flags, "mode": "linear_probe", "epochs": 2})
    assert trainer.cache_features and summary["status"] == "finished"
    assert trainer.cfg.lr == 0.1 and trainer.cfg.weight_decay == 0.0


def test_early_stopping_ends_run(tiny_flags):
    # no AUROC can improve by min_delta 0.5 after epoch 1 -> stops after patience epochs.
    _, summary, events = run({**tiny_flags, "epochs": 6, "early_stopping": 1, "min_delta": 0.5})
    assert summary["status"] == "early_stopped" and summary["epochs_completed"] == 2
    # best.pt follows the monitor alone (min_delta is for patience only): the first epoch of the maximum
    values = [e.metrics["val_auroc"] for e in events if isinstance(e, EpochDone)]
    assert summary["best_epoch"] == values.index(max(values)) + 1


def test_failed_run_writes_summary_with_error(tiny_flags):
    def boom(step, n):
        raise ValueError("injected failure")

    trainer = Trainer(resolve_config(tiny_flags, vram_gib=None), fault_hook=boom)
    summary = trainer.fit()
    assert summary["status"] == "failed" and "injected failure" in summary["error"]
    assert (trainer.run_dir / "error.txt").is_file()
