"""Issue 16, points 9 and 12: mixed precision said off on CPU everywhere, and the small faults a first
hour in the app turned up (status and footer after a run, ETA of an ended run, the shell after quitting,
"1 epochs", "working..", the two LRs of the tips panel, a followed run's epoch before its first epoch ends)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from core.training.trainer import Trainer
from core.events import RunFinished
from core.config.presets import find_preset
from core.config.resolve import resolve_config
from core.runs.folder import read_metrics
from medcls_tui.picker_logic import explain, save_current
from medcls_tui.reporter import ConsoleReporter
from medcls_tui.run_state import RunState, count
from medcls_tui.screens.advisor import AdvisorScreen
from medcls_tui.screens.picker import PickerScreen
from medcls_tui.screens.runs import RunsScreen
from medcls_tui.screens.training import TrainingScreen
from medcls_tui.shell_command import medcls_command
from test_tui_helpers import (
    cpu_hardware,
    make_app,
    picker_ready,
    screen_text,
    scripted_events,
    show_scripted_run,
    wait_for,
    wait_for_text,
)


# ---------------------------------------------------------------- 9: mixed precision on CPU
async def test_advisor_on_cpu_says_mixed_precision_is_off(tmp_path):
    app = make_app(tmp_path / "runs", hardware=cpu_hardware())
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen), what="advisor")
        await wait_for_text(pilot, "suggested batch")
        text = " ".join(str(app.screen.query_one("#advisor-text").render()).split())  # unwrapped
    assert "full_finetune · 64 px · mixed precision off (no GPU: float32 on CPU)" in text
    assert "mixed precision on" not in text


def test_cli_advise_on_cpu_says_mixed_precision_is_off(monkeypatch):
    import core.hardware.advisor

    from medcls_tui.cli import app as cli

    monkeypatch.setattr(core.hardware.advisor, "read_hardware", cpu_hardware)
    result = CliRunner().invoke(cli, ["advise", "--model", "resnet18", "--img_size", "64"])
    assert result.exit_code == 0, result.output
    assert "mixed precision off (no GPU" in result.output and "mixed precision on" not in result.output


def test_tips_panel_says_what_mixed_precision_does_on_this_machine():
    def reason(vram):
        resolved = resolve_config({}, preset="demo", vram_gib=vram)
        return next(r.reason for r in explain(resolved, vram) if r.key == "mixed_precision")

    assert reason(None).startswith("mixed precision off (no GPU")
    assert reason(24.0).startswith("mixed precision on")


# ---------------------------------------------------------------- 12: after a run ends
async def test_ended_run_drops_pause_stop_save_and_eta_and_the_picker_says_ready(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        session = show_scripted_run(app, scripted_events("runs/demo-run"))
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="live screen")
        live = await wait_for_text(pilot, "p Pause/resume", "s Stop", "c Checkpoint", "ETA")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        await wait_for_text(pilot, "run active")
        assert "ready: ctrl+t" not in screen_text(app)

        session.buffer(RunFinished(status="stopped", run_dir="runs/demo-run",
                                   summary={"status": "stopped", "epochs_completed": 1, "monitor": "val_auroc",
                                            "best_value": 0.78, "best_epoch": 1}))
        session.control.finished.set()
        picker_text = await wait_for_text(pilot, "ready: ctrl+t trains")
        assert "run active" not in picker_text
        await pilot.press("w")
        text = await wait_for_text(pilot, "STOPPED", "stopped: best val_auroc")
        await wait_for(pilot, lambda: "Pause/resume" not in screen_text(app), what="footer without pause")
        text = screen_text(app)
    assert "ETA" in live and "ETA" not in text
    assert "s Stop" not in text and "c Checkpoint" not in text and "v Chart" in text
    assert app.result_text(session.state).startswith("1 epoch, best")


async def test_shell_is_told_where_the_runs_are_after_quitting(tmp_path):
    root = tmp_path / "runs"
    (root / "demo-run" / "checkpoints").mkdir(parents=True)
    (root / "demo-run" / "config.yaml").write_text("model: resnet18\n")
    (root / "demo-run" / "checkpoints" / "last.pt").write_bytes(b"")
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        session = show_scripted_run(app, scripted_events(str(root / "demo-run")))
        session.buffer(RunFinished(status="stopped", run_dir=str(root / "demo-run"), summary={"status": "stopped"}))
        session.control.finished.set()
        await wait_for(pilot, lambda: session.state.status == "stopped", what="run folded as stopped")
    session.announced = False  # a tick after the screens are gone (CI hit this once) neither draws nor announces
    app.pump()
    text = app.farewell()
    assert f"1 run in {root.resolve()}" in text
    assert f"resume it: {medcls_command()} train --retrain {root / 'demo-run'}" in text
    assert "last run demo-run: stopped" in text


def test_cli_prints_the_farewell_after_the_app(monkeypatch, tmp_path):
    import medcls_tui.app
    import medcls_tui.cli as cli_module

    tty = SimpleNamespace(isatty=lambda: True)
    monkeypatch.setattr(cli_module, "sys", SimpleNamespace(stdin=tty, stdout=tty))
    monkeypatch.setattr(medcls_tui.app.MedclsApp, "run", lambda self, **kwargs: None)
    result = CliRunner().invoke(cli_module.app, ["--output_dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert f"0 runs in {(tmp_path / 'runs').resolve()}" in result.output


def test_counts_are_singular_for_one():
    assert (count(1, "epoch"), count(2, "epoch"), count(0, "run")) == ("1 epoch", "2 epochs", "0 runs")
    out = io.StringIO()
    reporter = ConsoleReporter(stream=out, tty=False)
    reporter(RunFinished(status="finished", run_dir="r", summary={"status": "finished", "epochs_completed": 1,
                                                                     "monitor": "val_auroc", "best_value": 0.7}))
    assert "finished: 1 epoch, best" in out.getvalue()


def test_saved_preset_notes_have_one_full_stop(tmp_path):
    import yaml

    resolved = resolve_config({}, preset="demo", vram_gib=None)
    path = save_current(resolved, str(tmp_path / "mine.yaml"), base=find_preset("demo"))
    notes = yaml.safe_load(path.read_text())["notes"]
    assert "working. Keys not listed" in notes and ".." not in notes


def test_tips_panel_says_why_the_lr_differs_from_the_mode_tables_typical_lr():
    resolved = resolve_config({}, preset="demo", vram_gib=None)
    rows = {r.key: r for r in explain(resolved, None)}
    assert rows["lr"].value == 0.001 and rows["lr"].source == "tip"
    assert "typical LR is 1e-4 to 5e-5" in rows["mode"].reason
    assert "lr 0.001 is the more specific tip for this model family" in rows["mode"].reason


# ---------------------------------------------------------------- 12: a run followed before its first epoch ends
def test_followed_run_shows_its_epoch_and_step_before_the_first_epoch_ends(tiny_flags):
    flags = {**tiny_flags, "epochs": 2, "log_every": 1}
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=lambda e: None)
    trainer.fit()
    records = read_metrics(Path(trainer.run_dir))
    first_epoch_end = next(i for i, r in enumerate(records) if r.get("event") == "EpochDone")
    steps = [r for r in records[:first_epoch_end] if r.get("event") == "Step"]
    assert len(steps) >= 2
    midway = records[:records.index(steps[-2]) + 1]  # what a reader sees mid-epoch 1
    state = RunState.from_records(midway)
    assert state.epoch == 1 and state.step == steps[-2]["global_step"] >= 1
    assert state.loss is not None and state.status == "running"


async def test_opening_the_apps_own_active_run_from_runs_shows_the_live_screen(tmp_path):
    root = tmp_path / "runs"
    (root / "demo-run").mkdir(parents=True)
    (root / "demo-run" / "config.yaml").write_text("model: resnet18\n")
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        show_scripted_run(app, scripted_events(str(root / "demo-run")))
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="live screen")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        await wait_for_text(pilot, "demo-run", "live")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="live screen again")
        text = await wait_for_text(pilot, "epoch 4/10", "step 10/20")
        assert json.dumps("epoch 0/") not in text
