"""Point 2 of issue 11 for the app: SIGTERM and SIGHUP (a `kill`, a closed SSH session, a killed tmux
pane) reaching the Textual app mid-run stop the run after the current step with a checkpoint and
`status: stopped`, then the app exits; no engine thread is left behind.

The signal is a real one sent to this process: the app handles it on its event loop
(`loop.add_signal_handler`), so the test first checks the handler is there (otherwise SIGTERM would
end pytest itself)."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from core.runs.folder import read_summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the TUI test helpers
from test_tui_helpers import (  # noqa: E402
    StepGate,
    engine_threads,
    gated_engine,
    make_app,
    picker_ready,
    press,
    wait_for,
    write_preset,
)

from medcls_tui.screens.training import TrainingScreen  # noqa: E402


def _handled_by_the_loop(sig: signal.Signals) -> bool:
    loop = asyncio.get_running_loop()
    return sig in getattr(loop, "_signal_handlers", {})


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_app_stops_the_run_gracefully_on_a_signal_and_exits(tmp_path, sig):
    write_preset(tmp_path / "user_presets", max_steps_per_epoch=5)
    gate = StepGate(1)  # the engine waits after step 1, so the signal lands mid-run on any machine
    app = make_app(tmp_path / "runs", initial_preset="tiny", trainer_factory=gated_engine(gate))
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await press(pilot, "ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="training screen")
        session = app.session
        await wait_for(pilot, lambda: gate.holding(1), what="step 1")
        assert _handled_by_the_loop(sig), f"the app does not handle {sig.name}: it would kill the process"
        os.kill(os.getpid(), sig)  # the stop request lets the gate go
        await wait_for(pilot, lambda: not app.is_running, what=f"app exit after {sig.name}")
    assert not _handled_by_the_loop(sig)  # handlers are removed with the app
    assert session.control.finished.is_set() and session.worker.is_finished
    assert not engine_threads()
    run_dir = tmp_path / "runs" / "tiny-run"
    summary = read_summary(run_dir)
    assert summary["status"] == "stopped" and summary["global_step"] == 1
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert not (run_dir / "run.lock").exists()
