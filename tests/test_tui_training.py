"""Pilot tests of the live training screen with the real engine (tiny synthetic runs) and of the runs screen."""
from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable

from core.runs.folder import read_metrics, read_summary
from medcls_tui.screens.confirm_quit import ConfirmQuitScreen
from medcls_tui.screens.confirm_stop import ConfirmStopScreen
from medcls_tui.screens.picker import PickerScreen
from medcls_tui.screens.run_detail import RunDetailScreen
from medcls_tui.screens.runs import RunsScreen
from medcls_tui.screens.training import TrainingScreen
from medcls_tui.widgets.curves import CurvePlot
from test_tui_helpers import (
    engine_threads,
    gated_engine,
    make_app,
    picker_ready,
    press,
    screen_text,
    scripted_events,
    StepGate,
    StubTrainer,
    stub_factory,
    wait_for,
    wait_for_text,
    write_preset,
)


async def start_tiny(pilot, app):
    await picker_ready(pilot)
    await press(pilot, "ctrl+t")
    await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="training screen")
    return app.session


async def runs_table(pilot, rows: int) -> DataTable:
    """The runs screen's table once it lists `rows` runs (it fills after the screen is shown)."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="runs screen")
    screen = pilot.app.screen
    await wait_for(pilot, lambda: bool(screen.query(DataTable)) and screen.query_one(DataTable).row_count >= rows,
                   what=f"{rows} run(s) listed")
    return screen.query_one(DataTable)


async def until_done(pilot, session):
    """The engine returned, its worker ended and the app folded every event into the run state."""
    await wait_for(pilot, lambda: not session.active, what="run end")
    if session.worker is not None:
        await wait_for(pilot, lambda: session.worker.is_finished, what="worker end")
    await wait_for(pilot, lambda: session.buffer.pending() == 0 and (session.state.finished or session.state.error),
                   what="last events folded into the run state")


@pytest.mark.parametrize("size", [(80, 24), (140, 40)])
async def test_full_flow_picker_to_finished_run(tmp_path, size):
    write_preset(tmp_path / "user_presets", max_steps_per_epoch=3)
    app = make_app(tmp_path / "runs", stable=False, initial_preset="tiny")
    async with app.run_test(size=size) as pilot:
        session = await start_tiny(pilot, app)
        await until_done(pilot, session)
        state = session.state
        assert state.status == "finished" and not state.error
        run_dir = tmp_path / "runs" / "tiny-run"
        assert state.run_dir == str(run_dir)
        assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
        summary = read_summary(run_dir)
        assert summary["status"] == "finished" and summary == state.summary
        assert state.global_step == state.total_steps == 6
        assert [r.epoch for r in state.epoch_log] == [1, 2]
        assert state.best_epoch in (1, 2) and state.per_class_auroc
        await wait_for_text(pilot, "FINISHED", "epoch 2/2", "best val_auroc", "checkpoints + summary.json")
        loss_plot = app.screen.query_one("#view-loss", CurvePlot)
        await wait_for(pilot, lambda: loss_plot._drawn is not None, what="loss curve drawn")
        assert state.loss_series()
        # the run survives navigation: back to the picker and watch it again
        await press(pilot, "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        await press(pilot, "w")
        await wait_for_text(pilot, "FINISHED", "epoch 2/2")
        assert isinstance(app.screen, TrainingScreen)
    assert not engine_threads()


async def test_pause_then_resume(tmp_path, monkeypatch):
    pumps = count_pumps(monkeypatch)
    write_preset(tmp_path / "user_presets", synthetic_size=240, max_steps_per_epoch=10)
    app = make_app(tmp_path / "runs", initial_preset="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        session = await start_tiny(pilot, app)
        state = session.state
        await wait_for(pilot, lambda: state.global_step >= 1, what="first step")
        await press(pilot, "p")
        await wait_for(pilot, lambda: state.status == "paused", what="paused")
        paused_at = state.global_step
        # The engine announced the pause and now blocks in Control.wait_while_paused: let the app
        # draw a few refresh ticks (counted, not timed) and check nothing else arrived meanwhile.
        await wait_for(pilot, lambda: any(t in engine_threads() for t in _waiting_in_pause()), what="loop blocked")
        await wait_for_text(pilot, "PAUSED")
        await _ticks(pilot, pumps, 3)
        assert state.global_step == paused_at and state.status == "paused" and session.active
        assert session.buffer.pending() == 0  # the engine emits nothing while paused
        await press(pilot, "p")
        await wait_for(pilot, lambda: state.status == "running" or state.finished, what="resumed")
        await until_done(pilot, session)
        assert state.status == "finished" and state.global_step == state.total_steps == 20
    assert not engine_threads()


async def test_stop_mid_run_saves_checkpoint_and_summary(tmp_path):
    write_preset(tmp_path / "user_presets", max_steps_per_epoch=5)
    gate = StepGate(1, 2)  # the engine waits after steps 1 and 2 until the keys are in
    app = make_app(tmp_path / "runs", initial_preset="tiny", trainer_factory=gated_engine(gate))
    async with app.run_test(size=(80, 24)) as pilot:
        session = await start_tiny(pilot, app)
        state = session.state
        await wait_for(pilot, lambda: gate.holding(1), what="step 1")
        await press(pilot, "c")  # checkpoint now
        await wait_for(pilot, lambda: session.control._save.is_set(), what="save request")
        gate.release()
        await wait_for(pilot, lambda: any(r == "save_now" for r, _, _ in state.checkpoints), what="save_now")
        await wait_for(pilot, lambda: gate.holding(2), what="step 2")
        await press(pilot, "s")  # asks first (issue 28.11): n keeps training
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="stop confirmation")
        await wait_for_text(pilot, "Stop run tiny-run?", "y: stop")
        await press(pilot, "n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmStopScreen), what="dialog closed")
        assert not session.control.stop_requested
        await press(pilot, "s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="stop confirmation")
        await press(pilot, "y")
        await wait_for(pilot, lambda: session.control.stop_requested, what="stop request")
        gate.release()
        await until_done(pilot, session)
        run_dir = tmp_path / "runs" / "tiny-run"
        assert state.status == "stopped" and state.global_step == 2 < state.total_steps == 10
        assert [r for r, _, _ in state.checkpoints][-1] == "stop"
        assert (run_dir / "checkpoints" / "last.pt").is_file()
        summary = read_summary(run_dir)
        assert summary["status"] == "stopped" and summary["global_step"] == state.global_step
        await wait_for_text(pilot, "STOPPED", "checkpoints + summary.json")
    assert not engine_threads()


async def test_resume_unfinished_run_from_runs_screen(tmp_path):
    """A stopped run (stopped by the engine's Control at step 3) continues like --retrain."""
    from core.training.trainer import Trainer
    from core.events import Control, StepDone
    from core.config.resolve import resolve_config

    flags = {"dataset": "synthetic", "model": "resnet18", "img_size": 32, "synthetic_size": 120, "epochs": 2,
             "batch_size": 16, "num_workers": 0, "output_dir": str(tmp_path / "runs"), "run_name": "cut",
             "max_steps_per_epoch": 3, "pretrained": False}
    control = Control()
    Trainer(resolve_config(flags, vram_gib=None), control=control,
            on_event=lambda e: control.request_stop() if isinstance(e, StepDone) and e.global_step == 4 else None
            ).fit()
    run_dir = tmp_path / "runs" / "cut"
    assert read_summary(run_dir)["status"] == "stopped"
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await press(pilot, "r")
        table = await runs_table(pilot, 1)
        assert [str(c) for c in table.get_row_at(0)][:2] == ["cut", "stopped"]
        await press(pilot, "e")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="resumed run")
        session = app.session
        await until_done(pilot, session)
        assert session.state.resumed and session.state.status == "finished"
        assert session.state.global_step == session.state.total_steps == 6
        assert session.resume_dir == run_dir
        summary = read_summary(run_dir)
        assert summary["status"] == "finished" and summary["epochs_completed"] == 2
        await press(pilot, "r")
        table = await runs_table(pilot, 1)
        assert [str(c) for c in table.get_row_at(0)][:2] == ["cut", "finished"]
    assert not engine_threads()


async def test_quit_during_run_stops_it_and_leaves_no_thread(tmp_path):
    write_preset(tmp_path / "user_presets", max_steps_per_epoch=5)
    gate = StepGate(1)  # the engine waits after step 1: the quit lands mid-run on any machine
    app = make_app(tmp_path / "runs", initial_preset="tiny", trainer_factory=gated_engine(gate))
    async with app.run_test(size=(80, 24)) as pilot:
        session = await start_tiny(pilot, app)
        await wait_for(pilot, lambda: gate.holding(1), what="step 1")
        # n keeps training
        await press(pilot, "ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuitScreen))
        await press(pilot, "n")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        assert session.active and app.is_running
        # y stops gracefully and exits
        await press(pilot, "ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuitScreen))
        await press(pilot, "y")  # the stop request lets the gate go
        await wait_for(pilot, lambda: not app.is_running, what="app exit")
    assert session.control.finished.is_set()
    assert session.worker.is_finished
    assert not engine_threads()
    run_dir = tmp_path / "runs" / "tiny-run"
    assert read_summary(run_dir)["status"] == "stopped"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert session.state.global_step == 1 < session.state.total_steps


async def test_quit_without_a_run_exits_at_once(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, what="app exit")


async def test_fast_loop_is_not_slowed_by_the_ui(tmp_path, monkeypatch):
    """20,000 steps through the buffer: every event arrives, and the screen redraws once per timer
    tick (never per event), so the loop never waits for the UI (counts, not timings: the overhead's
    speed is measured in bench/tui_overhead.py)."""
    pumps = count_pumps(monkeypatch)
    app = make_app(tmp_path / "runs", trainer_factory=stub_factory(steps=20_000, steps_per_epoch=2_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        redraws = []
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        screen = app.screen
        original = screen.refresh_view
        screen.refresh_view = lambda *a, **k: (redraws.append(1), original(*a, **k))
        session = app.session
        await wait_for(pilot, lambda: session.control.finished.is_set(), what="stub loop end")
        await until_done(pilot, session)
        assert session.state.global_step == 20_000 and session.state.status == "finished"
        assert session.buffer.appended == 20_002
        # the throttle: at most one redraw per drain tick, and far fewer than the 20,000 events
        assert len(redraws) <= len(pumps) + 1
        assert len(redraws) < 20_000 // 20


async def test_engine_failure_is_shown_not_fatal(tmp_path):
    """A run failing before its first step: the app survives and is back on the picker with the reason."""
    app = make_app(tmp_path / "runs", trainer_factory=stub_factory(fail="CUDA out of memory (simulated)"))
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: app.session is not None, what="run started")
        session = app.session
        await until_done(pilot, session)
        assert app.is_running  # exit_on_error=False: the app survives
        assert session.state.status == "failed"
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="back to the picker")
        await wait_for(pilot, lambda: "CUDA out of memory (simulated)" in screen_text(app), what="reason shown")
        # a new run can start after a failure
        assert not app.run_active


def _waiting_in_pause() -> list:
    """Threads blocked in Control.wait_while_paused (a paused engine loop)."""
    import sys
    import threading

    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == "wait_while_paused":
                found.append(thread)
                break
            frame = frame.f_back
    return found


def count_pumps(monkeypatch) -> list:
    """Count the app's drain-and-redraw ticks (patched on the class: the timer holds the bound method)."""
    from medcls_tui.app import MedclsApp

    seen, real_pump = [], MedclsApp.pump
    monkeypatch.setattr(MedclsApp, "pump", lambda self: (seen.append(1), real_pump(self))[1])
    return seen


async def _ticks(pilot, pumps: list, n: int) -> None:
    """Let the app's refresh timer drain the event buffer `n` more times."""
    target = len(pumps) + n
    await wait_for(pilot, lambda: len(pumps) >= target, what=f"{n} refresh ticks")


def _fake_run(root, name, status, events, mtime):
    import os

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: resnet18\ndataset: synthetic\n")
    with open(run / "metrics.jsonl", "w") as fh:
        for e in events:
            fh.write(json.dumps(e.to_dict()) + "\n")
    if status != "incomplete":
        (run / "summary.json").write_text(json.dumps({
            "status": status, "model": "resnet18", "dataset": "synthetic", "epochs_completed": 3,
            "monitor": "val_auroc", "best_value": 0.78, "best_epoch": 2,
            "val_auroc_per_class": {"Normal": 0.7, "Effusion": 0.8}}))
    else:
        (run / "checkpoints" / "last.pt").write_bytes(b"")
    for path in (run / "config.yaml", run):
        os.utime(path, (mtime, mtime))
    return run


async def test_runs_screen_lists_opens_and_refuses_finished_resume(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "old-run", "finished", scripted_events("runs/old-run"), 1_700_000_000)
    _fake_run(root, "cut-run", "incomplete", scripted_events("runs/cut-run", epochs_done=1), 1_700_000_500)
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("r")
        table = await runs_table(pilot, 2)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[0] for r in rows] == ["cut-run", "old-run"]  # newest first
        assert rows[0][1] == "interrupted" and rows[1][1] == "finished"  # killed: no live writer
        assert rows[1][2] == "auroc 0.780 @2"
        await pilot.press("down")
        await pilot.press("e")  # finished: refused
        await pilot.pause()
        assert app.session is None
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        detail = app.screen
        assert detail.state.status == "finished" and [r.epoch for r in detail.state.epoch_log] == [1, 2, 3]
        await wait_for_text(pilot, "old-run", "best val_auroc 0.7800 @ epoch 2", "overfitting")
        await pilot.press("2")
        assert app.screen.query_one("#view-metric").has_class("-current")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_run_detail_reads_a_real_run(tmp_path):
    """metrics.jsonl of a real engine run draws the same curves (slow-ish: one tiny run)."""
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    flags = {"dataset": "synthetic", "model": "resnet18", "img_size": 32, "synthetic_size": 96, "epochs": 2,
             "batch_size": 16, "num_workers": 0, "output_dir": str(tmp_path / "runs"), "run_name": "real",
             "max_steps_per_epoch": 2, "log_every": 1, "pretrained": False}
    Trainer(resolve_config(flags, vram_gib=None)).fit()
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        app.push_screen(RunDetailScreen(tmp_path / "runs" / "real"))
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await wait_for_text(pilot, "FINISHED")
        state = app.screen.state
        assert state.status == "finished" and len(state.epoch_log) == 2
        assert len(read_metrics(tmp_path / "runs" / "real")) > 0 and len(state.step_x) == 4


async def test_run_shortens_the_switch_interval_and_restores_it(tmp_path):
    """The training thread gets the GIL back sooner while a run is live (medcls_tui/gil.py); the
    interpreter's setting is back to what it was once the run ends."""
    import sys

    seen = []

    def factory(resolved, on_event, control, resume_dir=None):
        trainer = StubTrainer(resolved, on_event, control, resume_dir, steps=5)
        fit = trainer.fit
        trainer.fit = lambda: (seen.append(sys.getswitchinterval()), fit())[1]
        return trainer

    before = sys.getswitchinterval()
    app = make_app(tmp_path / "runs", trainer_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: app.session is not None and app.session.control.finished.is_set())
        await until_done(pilot, app.session)
    assert seen and seen[0] < before
    assert sys.getswitchinterval() == before
