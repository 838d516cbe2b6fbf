"""Live training: charts, progress, early stopping, warnings; pause/resume, stop, checkpoint now."""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..run_state import RunState
from ..widgets.header import MedclsHeader
from ..widgets.run_dashboard import VIEW_BINDINGS, DashboardViewActions, RunDashboard
from ..widgets.system_monitor import SystemMonitorBar


def result_text(state: RunState, stable: bool) -> Text:
    """The finished state: status, best metric, where the checkpoint and summary are."""
    text = Text()
    if not state.finished and not state.error:
        return text
    if state.status == "failed" or state.error:
        text.append("failed: ", style="bold red")
        text.append(state.error or "see error.txt in the run folder")
        return text
    s = state.summary
    text.append(f"{state.status.replace('_', ' ')}: ", style="bold green")
    if s.get("best_value") is not None:
        text.append(f"best {s.get('monitor')} {s['best_value']:.4f} @ epoch {s.get('best_epoch')}  ")
    if s.get("test_auroc") is not None:
        ci = s.get("test_auroc_ci")
        text.append(f"test AUROC {s['test_auroc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                    + f" (n={s.get('test_n')}, best ckpt)  ", style="bold")
    ckpt = state.last_checkpoint
    if state.run_dir:
        folder = state.run_name if stable else state.run_dir
        text.append(f"checkpoints + summary.json in {folder}", style="dim")
    elif ckpt:
        text.append(f"checkpoint {ckpt}", style="dim")
    return text


class TrainingScreen(DashboardViewActions, Screen):
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("s", "stop", "Stop"),
        Binding("c", "checkpoint", "Checkpoint"),
        *VIEW_BINDINGS,
        Binding("escape", "back", "Back"),
        Binding("r", "runs", "Runs"),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        yield RunDashboard(id="dashboard")
        yield SystemMonitorBar(id="system-monitor")
        yield Static(id="run-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#early-stop").border_title = "Early stop"
        self.query_one("#warnings").border_title = "Warnings"
        self._ready = True
        self.refresh_view(force=True)

    def on_unmount(self) -> None:
        self._ready = False

    @property
    def state(self) -> Optional[RunState]:
        session = self.app.session
        return session.state if session is not None else None

    def refresh_view(self, force: bool = False) -> None:
        state = self.state
        if state is None or not getattr(self, "_ready", False):
            return  # the app's timer can tick between push_screen and compose
        settings = self.app.settings
        try:
            dashboard = self.query_one(RunDashboard)
            result = self.query_one("#run-result", Static)
            system = self.query_one(SystemMonitorBar)
        except NoMatches:  # being removed (screen popped between two timer ticks)
            return
        try:
            dashboard.show(state, stable=settings.stable, ascii=settings.ascii, force=force)
            system.show(state)
        except NoMatches:  # its widgets are being removed: the screen is being popped
            return
        text = result_text(state, settings.stable)
        if getattr(result, "_medcls_last", None) != text:
            result._medcls_last = text
            result.update(text)
        result.set_class(bool(text.plain), "-shown")
        active = self.app.run_active
        if active != getattr(self, "_bindings_active", None):
            self._bindings_active = active
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action in ("toggle_pause", "stop", "checkpoint"):
            return self.app.run_active  # an ended run has nothing to pause, stop or save: not in the footer
        return True

    def action_toggle_pause(self) -> None:
        self.app.toggle_pause()

    def action_stop(self) -> None:
        """Asks first (y/n): stopping is not undone by a key, only by resuming from the Runs screen."""
        from .confirm_stop import ConfirmStopScreen

        if not self.app.run_active:
            return
        state = self.state
        self.app.push_screen(ConfirmStopScreen(state.run_name if state is not None else ""), self._stop_answer)

    def _stop_answer(self, confirmed: Optional[bool]) -> None:
        if confirmed:
            self.app.stop_run()

    def action_checkpoint(self) -> None:
        self.app.save_now()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_runs(self) -> None:
        self.app.show_runs()
