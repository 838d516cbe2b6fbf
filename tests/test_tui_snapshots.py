"""SVG snapshots of the main screens at 80x24 (pytest-textual-snapshot; update with --snapshot-update).

Stable by construction: AppSettings(stable=True) hides times, img/s, dates and paths; the preset list
is a fixed subset; the run on the live screen is a scripted event history (no torch); the advisor uses
a fixed hardware reading and the spec-table path.
"""
from __future__ import annotations

import json
import os

import pytest

from medcls_tui.screens.run_detail import RunDetailScreen
from medcls_tui.screens.runs import RunsScreen
from medcls_tui.screens.training import TrainingScreen
from test_tui_helpers import (
    NIH_CLASSES,
    SNAPSHOT_PRESETS,
    gpu_hardware,
    make_app,
    only_presets,
    picker_ready,
    scripted_events,
    show_scripted_run,
    wait_for,
)

SIZE = (80, 24)


def snap_app(tmp_path, **kwargs):
    return make_app(tmp_path / "runs", presets=only_presets(*SNAPSHOT_PRESETS), **kwargs)


def test_snapshot_picker(snap_compare, tmp_path):
    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=picker_ready)


def test_snapshot_picker_invalid_field(snap_compare, tmp_path):
    async def edit(pilot):
        picker = await picker_ready(pilot)
        picker.query_one("#field-lr").focus()
        await pilot.press("minus", "1")
        await picker_ready(pilot)
        pilot.app.screen.query_one("#presets").focus()  # no blinking cursor in the snapshot
        await pilot.pause()

    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=edit)


def test_snapshot_advisor(snap_compare, tmp_path):
    assert snap_compare(snap_app(tmp_path, hardware=gpu_hardware()), terminal_size=SIZE, press=["a"],
                        run_before=picker_ready)


async def _live(pilot, view=None):
    await picker_ready(pilot)
    if view == "4":  # per-class AUROC: NIH's 14 findings, the case that must fit 80x24
        events = scripted_events("runs/demo-run", multi_label=True, classes=NIH_CLASSES)
    else:
        events = scripted_events("runs/demo-run")
    show_scripted_run(pilot.app, events)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrainingScreen))
    await pilot.pause()
    if view:
        await pilot.press(view)
    await pilot.pause()


def test_snapshot_training(snap_compare, tmp_path):
    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=_live)


def test_snapshot_training_per_class_auroc(snap_compare, tmp_path):
    async def run_before(pilot):
        await _live(pilot, "4")

    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_training_wide(snap_compare, tmp_path):
    assert snap_compare(snap_app(tmp_path), terminal_size=(140, 40), run_before=_live)


def test_snapshot_quit_confirmation(snap_compare, tmp_path):
    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=_live, press=["ctrl+q"])


def _write_runs(root):
    for i, (name, status, epochs_done) in enumerate([("resnet18-nih-ft", "finished", 3),
                                                     ("vit-covidx-ft", "stopped", 2),
                                                     ("demo-run", "incomplete", 1)]):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("model: resnet18\n")
        events = scripted_events(f"runs/{name}", epochs_done=epochs_done)
        (run / "metrics.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
        if status != "incomplete":
            (run / "summary.json").write_text(json.dumps({
                "status": status, "model": "resnet18", "dataset": "synthetic", "epochs_completed": epochs_done,
                "monitor": "val_auroc", "best_value": 0.78, "best_epoch": 2}))
        else:
            (run / "checkpoints" / "last.pt").write_bytes(b"")
        t = 1_700_000_000 + 1000 * i
        os.utime(run / "config.yaml", (t, t))
        os.utime(run, (t, t))


def test_snapshot_runs(snap_compare, tmp_path):
    _write_runs(tmp_path / "runs")

    async def run_before(pilot):
        await picker_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        await pilot.pause()

    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_run_detail(snap_compare, tmp_path):
    _write_runs(tmp_path / "runs")

    async def run_before(pilot):
        await picker_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(snap_app(tmp_path), terminal_size=SIZE, run_before=run_before)
