"""One past run: its curves from metrics.jsonl, best metric, warnings; follows a run still being written."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..run_state import RunState, fmt_value
from ..widgets.header import MedclsHeader
from ..widgets.run_dashboard import VIEW_BINDINGS, DashboardViewActions, RunDashboard

FOLLOW_INTERVAL_S = 2.0


def load_run_state(run_dir: Path) -> RunState:
    """The run as its folder says; while a process writes it (an extension of a finished run too) its
    summary.json is an old one, so the records alone tell where it is."""
    from core.runs.folder import read_metrics, read_summary, run_status

    summary = read_summary(run_dir)
    if run_status(run_dir, summary) == "running":
        summary = {}
    return RunState.from_records(read_metrics(run_dir), summary)


def folder_signature(run_dir: Path) -> tuple:
    """What changes when a run folder is written to: metrics.jsonl's size, summary.json's mtime, the lock."""
    from core.runs.lock import LOCK_FILE

    out = []
    for name in ("metrics.jsonl", "summary.json", LOCK_FILE):
        try:
            st = (run_dir / name).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def detail_text(run_dir: Path, state: RunState) -> Text:
    s = state.summary
    text = Text()
    text.append(f" {run_dir.name}", style="bold")
    model = s.get("model") or state.config.get("model") or "?"
    dataset = s.get("dataset") or state.config.get("dataset") or "?"
    text.append(f"  {model} · {dataset} · {state.status.replace('_', ' ')}")
    if s.get("best_value") is not None:
        text.append(f" · best {s.get('monitor')} {fmt_value(s.get('best_value'))} @ epoch {s.get('best_epoch')}")
    elif state.best_value is not None:  # still being written: no summary yet
        text.append(f" · best {state.config.get('monitor') or ''} {fmt_value(state.best_value)} @ epoch {state.best_epoch}")
    if s.get("error"):
        text.append(f"\n error: {s['error']}", style="red")
    return text


class RunDetailScreen(DashboardViewActions, Screen):
    BINDINGS = [
        *VIEW_BINDINGS,
        Binding("e", "resume", "Resume/extend"),
        Binding("t", "evaluation", "Evaluation"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state: Optional[RunState] = None
        self._signature: Optional[tuple] = None

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        yield Static(id="detail-title")
        yield RunDashboard(id="dashboard")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#early-stop").border_title = "Early stop"
        self.query_one("#warnings").border_title = "Warnings"
        self.reload()
        # Follow the folder whatever its status: a finished run can be extended (e) or resumed elsewhere.
        self.set_interval(FOLLOW_INTERVAL_S, self.reload)

    def on_screen_resume(self) -> None:
        self.reload()  # back from the live screen of an extension started here

    def reload(self) -> None:
        signature = folder_signature(self.run_dir)
        if signature == self._signature and self.state is not None:
            return
        self._signature = signature
        self.state = load_run_state(self.run_dir)
        if not self.state.run_name:
            self.state.run_name = self.run_dir.name
        settings = self.app.settings
        self.query_one("#detail-title", Static).update(detail_text(self.run_dir, self.state))
        self.query_one(RunDashboard).show(self.state, stable=settings.stable, ascii=settings.ascii, force=True)

    def action_resume(self) -> None:
        if self.state is None:
            return
        done = int(self.state.summary.get("epochs_completed") or self.state.epoch or 0)
        self.app.resume_or_extend(self.run_dir, self.state.status, done)

    def action_evaluation(self) -> None:
        from .evaluation import EvaluationScreen

        self.app.push_screen(EvaluationScreen(self.run_dir))

    def action_back(self) -> None:
        self.app.pop_screen()
