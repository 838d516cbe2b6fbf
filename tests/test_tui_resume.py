"""A past run in the app, with the real engine: every chart drawn on the detail screen at once, a finished
run extended by N epochs, and the live view of a resumed run continuing its history (issue 16, 2-4)."""
from __future__ import annotations

import pytest
from textual.widgets import Input
from typer.testing import CliRunner

from medcls_tui.cli import app as cli_app
from medcls_tui.screens.extend_run import ExtendRunScreen
from medcls_tui.screens.run_detail import RunDetailScreen
from medcls_tui.screens.runs import RunsScreen
from medcls_tui.widgets.curves import CurvePlot
from medcls_tui.widgets.run_widgets import early_stop_text
from test_tui_helpers import make_app, picker_ready, screen_text, wait_for

from conftest import TINY


@pytest.fixture
def finished_run(tmp_path, one_torch_thread):
    """A real 2-epoch run, finished, in tmp_path/runs/done."""
    out = tmp_path / "runs"
    args = ["train", "--output_dir", str(out), "--run_name", "done", "--max_steps_per_epoch", "3",
            "--early_stopping", "5", "--log_every", "1"]
    for key, value in TINY.items():
        if isinstance(value, bool):  # boolean settings are --flag / --no_flag switches
            args.append(f"--{key}" if value else f"--no_{key}")
        else:
            args += [f"--{key}", str(value)]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    return out / "done"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_run_detail_draws_every_visible_chart_without_pressing_v(finished_run, size):
    app = make_app(finished_run.parent)
    async with app.run_test(size=size) as pilot:
        await picker_ready(pilot)
        app.push_screen(RunDetailScreen(finished_run))
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="detail screen")
        await pilot.pause()
        plots = [p for p in app.screen.query(CurvePlot) if p.display]
        assert len(plots) == (3 if size[0] >= 120 else 1)
        await wait_for(pilot, lambda: all(p._drawn is not None and p.size.width > 0 for p in plots),
                       timeout=300, what="every chart drawn")
        if size[0] >= 120:
            text = screen_text(app)
            assert "val_auroc" in text and "Learning rate (x1e" in text  # titles of the metric and LR charts


async def test_finished_run_extends_by_n_epochs_and_the_live_view_continues_its_history(finished_run):
    app = make_app(finished_run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await picker_ready(pilot)
        app.show_runs()
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        await pilot.pause()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="extend dialog")
        assert "done finished after 2 epochs" in screen_text(app)
        app.screen.query_one("#extend-epochs", Input).value = "1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session is not None, what="run started")
        state = app.session.state
        # the run's history is there from the start (the engine may already have added epoch 3)
        assert state.best_epoch is not None and state.epoch >= 2 and len(state.epoch_log) >= 2
        assert [r.epoch for r in state.epoch_log][:2] == [1, 2]
        assert "waiting for the first validation" not in early_stop_text(state).plain
        assert min(state.step_x) <= 3 and state.elapsed_offset > 0
        await wait_for(pilot, lambda: not app.session.active, timeout=300, what="extension to finish")
        await pilot.pause()
        assert state.status == "finished", state.error
        assert state.summary["epochs_completed"] == 3
        assert [r.epoch for r in state.epoch_log] == [1, 2, 3]
        assert min(state.step_x) <= 3  # the loss curve still starts at the run's first steps
        assert state.elapsed_s > state.elapsed_offset
        assert "patience" in early_stop_text(state).plain


async def test_detail_and_runs_list_follow_an_extension_started_from_them(finished_run):
    """28.4: after `e` extends a finished run, the Runs list and the run's detail (both under the live
    screen) refresh from the folder: no FINISHED 2/2 and `ep 2` until `g`."""
    app = make_app(finished_run.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        runs = app.screen
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="detail screen")
        detail = app.screen
        await wait_for(pilot, lambda: detail.state is not None and detail.state.epoch == 2, what="detail loaded")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="extend dialog")
        app.screen.query_one("#extend-epochs", Input).value = "1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session is not None, what="run started")
        await wait_for(pilot, lambda: not app.session.active, timeout=300, what="extension to finish")
        # the screens below the live one follow the folder on their own timers
        await wait_for(pilot, lambda: detail.state.epoch == 3 and detail.state.status == "finished",
                       what="detail screen to follow the folder")
        await wait_for(pilot, lambda: runs.runs[str(finished_run)].epochs_completed == 3, what="runs list")
        while app.screen is not detail:
            app.pop_screen()
            await pilot.pause()
        text = screen_text(app)
        assert "finished" in text and "3/3" in text, text
        app.pop_screen()
        await wait_for(pilot, lambda: app.screen is runs, what="back to runs")
        await pilot.pause()
        row = next(line for line in screen_text(app).splitlines() if "done" in line)
        assert " 3 " in row and "@" in row, row
