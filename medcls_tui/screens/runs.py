"""Past runs in the output folder: status and best metric; open one, resume an unfinished one."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ..run_state import fmt_value

RESUMABLE = ("stopped", "incomplete", "interrupted", "aborted", "failed")


def can_resume(status: str, has_checkpoint: bool) -> tuple[bool, str]:
    """(ok, why not): only unfinished runs with a last.pt continue (like --retrain)."""
    if status in ("finished", "early_stopped"):
        return False, f"this run already {status.replace('_', ' ')}"
    if not has_checkpoint:
        return False, "no checkpoints/last.pt to resume from (still running elsewhere, or stopped before epoch 1)"
    return True, ""


class RunsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open"),
        Binding("e", "resume", "Resume/extend"),
        Binding("t", "evaluation", "Evaluation"),
        Binding("g", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, object] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "status", "best", "ep", "model", "date")
        self.load()
        table.focus()

    def load(self) -> None:
        from core.runs import list_runs

        stable = self.app.settings.stable
        folder = self.app.output_dir
        table = self.query_one(DataTable)
        table.clear()
        self.runs = {}
        found = list_runs(folder)
        live = self.app.session.state.run_dir if self.app.session is not None else ""
        for info in found:
            key = str(info.path)
            self.runs[key] = info
            status = info.status
            if live and Path(live) == info.path and self.app.run_active:
                status = "live"
            best = (f"{info.monitor} {fmt_value(info.best_value)} @{info.best_epoch}"
                    if info.best_value is not None else "-")
            table.add_row(info.name, status, best, str(info.epochs_completed), info.model or "-",
                          "--" if stable else info.date, key=key)
        where = "the output folder" if stable else folder
        self.query_one("#runs-title", Static).update(f" {len(found)} run(s) in {where}")
        hint = ("enter: curves   e: resume a run, or extend a finished one   g: refresh"
                if found else f"No runs yet in {where}. Train one from the picker (ctrl+t).")
        self.query_one("#runs-hint", Static).update(hint)

    def selected(self) -> Optional[object]:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.runs.get(key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        from .run_detail import RunDetailScreen

        info = self.selected()
        if info is not None:
            self.app.push_screen(RunDetailScreen(info.path))

    def action_evaluation(self) -> None:
        from .evaluation import EvaluationScreen

        info = self.selected()
        if info is not None:
            self.app.push_screen(EvaluationScreen(info.path))

    def action_resume(self) -> None:
        info = self.selected()
        if info is None:
            return
        self.app.resume_or_extend(info.path, info.status, int(info.epochs_completed or 0))

    def action_refresh(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()

    def refresh_view(self) -> None:
        pass
