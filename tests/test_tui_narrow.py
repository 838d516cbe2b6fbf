"""80 columns (issue 16, point 8): the live header keeps its numbers beside a long run name, the runs
table keeps model and date whole, and NIH's 14 per-class AUROCs all show (or say that they scroll)."""
from __future__ import annotations

import json
import os
import time

from core.runs.folder import list_runs
from medcls_tui.run_state import RunState
from medcls_tui.screens.runs import RunsScreen, fit_widths, short_date
from medcls_tui.screens.training import TrainingScreen
from medcls_tui.widgets.run_widgets import class_auroc_text, progress_line
from test_tui_helpers import (
    NIH_CLASSES,
    make_app,
    picker_ready,
    screen_text,
    scripted_events,
    show_scripted_run,
    wait_for,
    wait_for_text,
)

LONG_NAME = "resnet50-nih-full_finetune-lr0.0001-20261201-110000"


async def _live(pilot, events, view=None):
    await picker_ready(pilot)
    show_scripted_run(pilot.app, events)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrainingScreen), what="live screen")
    if view:
        await pilot.press(view)
    await pilot.pause()


async def test_live_header_keeps_the_loss_beside_a_long_run_name(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await _live(pilot, scripted_events(f"runs/{LONG_NAME}"))
        text = await wait_for_text(pilot, "loss 0.6320", "step 10/20")
        header = next(line for line in text.splitlines() if "RUNNING" in line)
        assert "resnet50-nih" in header and "110000" in header  # start and date of the name stay
        assert LONG_NAME not in header  # shortened in the middle to make room


def test_progress_line_only_shortens_the_name_when_it_must():
    state = RunState()
    state.apply_all(scripted_events(f"runs/{LONG_NAME}"))
    assert LONG_NAME in progress_line(state, stable=True, width=200).plain
    line = progress_line(state, stable=True, width=78).plain
    assert len(line) <= 78 and line.endswith("loss 0.6320")


def _write_runs(root, models):
    for i, (name, model) in enumerate(models):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text(f"model: {model}\n")
        events = scripted_events(f"runs/{name}", epochs_done=3)
        (run / "metrics.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
        (run / "summary.json").write_text(json.dumps({
            "status": "early_stopped", "model": model, "dataset": "nih", "epochs_completed": 3,
            "monitor": "val_auroc", "best_value": 0.78, "best_epoch": 2}))
        t = time.time() - 3600 * (i + 1)
        for path in (run / "config.yaml", run):
            os.utime(path, (t, t))


async def test_runs_table_keeps_model_and_date_whole_at_80_columns(tmp_path):
    root = tmp_path / "runs"
    _write_runs(root, [(LONG_NAME, "resnet50"), ("convnext-covidx-" + "x" * 40, "convnext_tiny")])
    app = make_app(root, stable=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        text = await wait_for_text(pilot, "runs in")
        year = time.strftime("%Y")
        for info in list_runs(root):
            line = next(row for row in text.splitlines() if info.name[:8] in row)
            assert f" {info.model} " in line, line
            assert short_date(info.date, year) in line, line
            assert "early stopped" in line and "auroc 0.780 @2" in line


def test_fit_widths_fits_the_screen_and_keeps_short_models():
    rows = [(LONG_NAME, "early stopped", "auroc 0.780 @2", "3", "resnet18", "12-01 11:00")]
    widths = fit_widths(rows, 80)
    assert sum(widths) + 2 * len(widths) + 2 <= 80
    assert widths[4] >= len("resnet18") and widths[5] == len("12-01 11:00")
    assert fit_widths(rows, 200)[0] == len(LONG_NAME)


async def test_nih_per_class_auroc_shows_all_14_classes_at_80x24(tmp_path):
    app = make_app(tmp_path / "runs")
    events = scripted_events("runs/nih-run", multi_label=True, classes=NIH_CLASSES)
    async with app.run_test(size=(80, 24)) as pilot:
        await _live(pilot, events, view="4")
        text = await wait_for_text(pilot, "AUROC per class", *NIH_CLASSES)
        assert "scroll" not in text


def test_per_class_auroc_says_it_scrolls_when_it_cannot_fit():
    state = RunState()
    state.apply_all(scripted_events("runs/nih-run", multi_label=True, classes=NIH_CLASSES))
    tight = class_auroc_text(state, width=40, height=6).plain  # one column only, 5 rows of 14
    assert "5 of 14 rows shown, scroll" in tight
    roomy = class_auroc_text(state, width=78, height=10).plain  # two columns of 7
    assert "scroll" not in roomy and len(roomy.splitlines()) == 8


async def test_live_header_fits_again_when_the_terminal_shrinks(tmp_path):
    """A resize alone (no new event) refits the header: the loss stays visible at the new width."""
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(160, 24)) as pilot:
        await _live(pilot, scripted_events(f"runs/{LONG_NAME}"))
        await wait_for_text(pilot, "loss 0.6320", LONG_NAME)
        await pilot.resize_terminal(80, 24)

        def header_fits() -> bool:
            lines = [ln for ln in screen_text(app).splitlines() if "RUNNING" in ln]
            return bool(lines) and "loss 0.6320" in lines[0] and LONG_NAME not in lines[0]

        await wait_for(pilot, header_fits, what="header refitted to 80 columns")
