"""Past runs in the output folder: status and best metric; open one, resume an unfinished one."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ..run_state import count
from .run_detail import FOLLOW_INTERVAL_S
from ..widgets.header import MedclsHeader
from ..widgets.run_widgets import shorten

RESUMABLE = ("stopped", "incomplete", "interrupted", "aborted", "failed")


def can_resume(status: str, has_checkpoint: bool) -> tuple[bool, str]:
    """(ok, why not): only unfinished runs with a last.pt continue (like --retrain)."""
    if status in ("finished", "early_stopped"):
        return False, f"this run already {status.replace('_', ' ')}"
    if not has_checkpoint:
        return False, "no checkpoints/last.pt to resume from (still running elsewhere, or stopped before epoch 1)"
    return True, ""


HEADERS = ("run", "status", "best val", "ep", "model", "started")
FLEXIBLE = (0, 4)
"""Columns shortened (in the middle) when the table is wider than the screen: run name, model."""
MIN_FLEX = (12, 10)


def best_cell(monitor: Optional[str], value: Optional[float], epoch: Optional[int]) -> str:
    """'auroc 0.780 @2': the monitor without its 'val_' (the column says val), 3 decimals, the epoch."""
    if value is None:
        return "-"
    name = (monitor or "").removeprefix("val_")
    try:
        number = f"{float(value):.3f}"
    except (TypeError, ValueError):
        number = str(value)
    return f"{name} {number} @{epoch}".strip()


def short_date(date: str, this_year: str) -> str:
    """'2026-12-01 11:00' -> '12-01 11:00' this year; other years keep the year and drop the time."""
    if date.startswith(f"{this_year}-"):
        return date[len(this_year) + 1:]
    return date.split(" ")[0]


def fit_widths(rows: list[tuple[str, ...]], width: int) -> list[int]:
    """Column widths that fit `width` terminal columns (cell padding and a scrollbar included):
    fixed columns keep their text; the model keeps up to 16 characters and the run name gets the rest
    (each cut at worst to MIN_FLEX), so a model name is never reduced to 'resne'."""
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    avail = width - 2 * len(HEADERS) - 2
    fixed = sum(w for i, w in enumerate(natural) if i not in FLEXIBLE)
    room = avail - fixed
    name_nat, model_nat = natural[0], natural[4]
    if name_nat + model_nat <= room:
        return natural
    model_w = max(MIN_FLEX[1], min(model_nat, 16, room - MIN_FLEX[0]))  # most timm names fit 16
    name_w = max(MIN_FLEX[0], room - model_w)
    if name_w > name_nat:
        name_w, model_w = name_nat, min(model_nat, room - name_nat)
    widths = list(natural)
    widths[0], widths[4] = name_w, model_w
    return widths


class RunsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open"),
        Binding("e", "resume", "Resume/extend"),
        Binding("t", "evaluation", "Evaluation"),
        Binding("g", "refresh", "Refresh"),
        Binding("m", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, object] = {}
        self.marked: list[str] = []
        """Run folders marked for comparison, in the order marked (the first is the reference A)."""
        self._signature: tuple = ()

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        yield Static(id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*HEADERS)
        self.load()
        table.focus()
        self.set_interval(FOLLOW_INTERVAL_S, self.poll)  # runs written by this app or another process

    def on_screen_resume(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Reload when a run folder was added, removed or written to (see folder_signature)."""
        if self.folder_signature() != self._signature:
            self.load()

    def folder_signature(self) -> tuple:
        from .run_detail import folder_signature

        root = Path(self.app.output_dir)
        try:
            paths = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            return ()
        return (self.app.run_active, *((p.name, folder_signature(p)) for p in paths))

    def load(self) -> None:
        import time

        from core.runs.folder import list_runs

        stable = self.app.settings.stable
        folder = self.app.output_dir
        self._signature = self.folder_signature()
        table = self.query_one(DataTable)
        found = list_runs(folder)
        this_year = time.strftime("%Y")
        rows: list[tuple[str, ...]] = []
        for info in found:
            status = info.status
            if self.is_live(info.path):
                status = "live"
            rows.append((info.name, status.replace("_", " "), best_cell(info.monitor, info.best_value, info.best_epoch),
                         str(info.epochs_completed), info.model or "-",
                         "--" if stable else short_date(info.date, this_year)))
        self._rows = rows
        self._keys = [str(info.path) for info in found]
        self.runs = dict(zip(self._keys, found))
        self._fill(table)
        where = "the output folder" if stable else folder
        self.query_one("#runs-title", Static).update(f" {count(len(found), 'run')} in {where}")
        self.marked = [k for k in self.marked if k in self.runs]
        hint = ("enter: curves  e: resume/extend  t: evaluation  m: mark  c: compare marked"
                if found else f"No runs yet in {where}. Train one from the picker (ctrl+t).")
        self.query_one("#runs-hint", Static).update(hint)

    def _fill(self, table: DataTable) -> None:
        """The rows, shortened to the table's width (the run name and model in the middle)."""
        ascii = self.app.settings.ascii
        width = self.size.width or self.app.size.width
        widths = fit_widths(self._rows, width)
        self._fitted_width = width
        cursor = table.cursor_row
        table.clear(columns=True)
        for header, w in zip(HEADERS, widths):
            table.add_column(header, width=w)
        for key, row in zip(self._keys, self._rows):
            if key in self.marked:  # the mark takes the first characters of the name
                row = (f"{'*' if ascii else '●'}{self.marked.index(key) + 1} {row[0]}", *row[1:])
            cells = [shorten(c, widths[i], ascii) if i in FLEXIBLE else c for i, c in enumerate(row)]
            table.add_row(*cells, key=key)
        if self._rows:
            table.move_cursor(row=min(cursor, len(self._rows) - 1))

    def on_resize(self) -> None:
        if getattr(self, "_rows", None) is not None and self.size.width != getattr(self, "_fitted_width", None):
            self._fill(self.query_one(DataTable))

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
        if info is None:
            return
        if self.is_live(info.path):  # this app's own run: its live screen, not a replay of metrics.jsonl
            self.app.show_training()
            return
        self.app.push_screen(RunDetailScreen(info.path))

    def is_live(self, path: Path) -> bool:
        session = self.app.session
        if session is None or not self.app.run_active or not session.state.run_dir:
            return False
        return Path(session.state.run_dir).resolve() == Path(path).resolve()

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

    def action_mark(self) -> None:
        info = self.selected()
        if info is None:
            return
        key = str(info.path)
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        self._fill(self.query_one(DataTable))

    def action_compare(self) -> None:
        from .compare import CompareScreen

        if len(self.marked) < 2:
            self.notify("mark two or more runs with m, then press c (the first marked is the reference)",
                        severity="warning")
            return
        self.app.push_screen(CompareScreen([Path(k) for k in self.marked]))

    def action_back(self) -> None:
        self.app.pop_screen()

    def refresh_view(self) -> None:
        pass
