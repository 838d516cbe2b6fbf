"""A run's dashboard: progress header, charts (one at a time at 80 columns), early stop, warnings.

Shared by the live training screen and a past run's detail screen; it only reads a RunState.
"""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Static

from ..run_state import RunState
from .curves import CurvePlot
from .run_widgets import ClassAurocPanel, EarlyStopPanel, RunHeader, WarningsPanel

VIEWS = ("loss", "metric", "lr", "classes")
VIEW_TITLES = {"loss": "Loss", "metric": "Metric", "lr": "LR", "classes": "AUROC/class"}
VIEW_BINDINGS = [
    Binding("v", "next_view", "Chart"),
    *(Binding(str(i), f"view('{name}')", VIEW_TITLES[name], show=False) for i, name in enumerate(VIEWS, 1)),
]
"""The chart keys of every screen that shows a RunDashboard (listed where each screen wants them in its footer)."""


class DashboardViewActions:
    """The actions behind VIEW_BINDINGS, mixed into the screens that show a RunDashboard."""

    def action_next_view(self) -> None:
        self.query_one(RunDashboard).next_view()

    def action_view(self, name: str) -> None:
        if name in VIEWS:
            self.query_one(RunDashboard).view = name


class RunDashboard(Vertical):
    view: reactive[str] = reactive("loss")
    """The chart shown when the terminal is narrow (all are shown on wide terminals)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None
        self._shown_version = -1
        self.stable = False
        self.ascii = False

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield Static(id="view-tabs")
        with Horizontal(id="charts"):
            yield CurvePlot("loss", id="view-loss", classes="view -current")
            yield CurvePlot("metric", id="view-metric", classes="view")
            yield CurvePlot("lr", id="view-lr", classes="view")
            yield ClassAurocPanel(id="view-classes", classes="view")
        with Horizontal(id="run-bottom"):
            yield EarlyStopPanel(id="early-stop")
            yield WarningsPanel(id="warnings")

    def on_mount(self) -> None:
        self._show_tabs()

    def watch_view(self, view: str) -> None:
        for name in VIEWS:
            self.query_one(f"#view-{name}").set_class(name == view, "-current")
        self._show_tabs()
        if self._state is not None:
            self.call_after_refresh(self.show, self._state, self.stable, self.ascii, True)

    def _show_tabs(self) -> None:
        text = Text(" ")
        for i, name in enumerate(VIEWS, 1):
            style = "reverse bold" if name == self.view else "dim"
            text.append(f" {i} {VIEW_TITLES[name]} ", style=style)
            text.append(" ")
        text.append(" (v: next chart)", style="dim")
        self.query_one("#view-tabs", Static).update(text)

    def on_resize(self) -> None:
        """Charts drawn before the layout knew the size (a past run's screen does not redraw on a timer):
        draw again once it does, so every chart shows without pressing v."""
        if self._state is not None:
            self.call_after_refresh(self.show, self._state, self.stable, self.ascii, True)

    def next_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]

    def show(self, state: RunState, stable: bool = False, ascii: bool = False, force: bool = False) -> None:
        """Redraw from `state`: panels when it changed, charts when their data changed (rate-limited)."""
        self.stable, self.ascii = stable, ascii
        if force or state is not self._state or state.version != self._shown_version:
            self._state, self._shown_version = state, state.version
            self.query_one(RunHeader).show(state, stable, ascii)
            self.query_one(ClassAurocPanel).show(state, ascii)
            self.query_one(EarlyStopPanel).show(state, ascii)
            self.query_one(WarningsPanel).show(state)
        for plot in self.query(CurvePlot):
            if plot.display:  # hidden charts draw when they are shown (see watch_view)
                plot.draw(state, ascii, force=force)
