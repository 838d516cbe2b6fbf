"""A run's evaluation: the per-class table with 95% CIs (test split when scored, else val) and the
ROC curves; `t` / `v` score the test / val split in a worker thread with a progress bar."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Optional

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static
from textual_plotext import PlotextPlot

from core.evaluation.report import COLUMNS, headline, table_rows

from ..widgets.header import MedclsHeader

SPLITS_SHOWN = ("test", "val")
"""Which saved report the screen opens with: the test split when the run has one."""
APP_BOOTSTRAP = 1000


def saved_report(run_dir: Path) -> tuple[Optional[str], Optional[dict]]:
    """(split, eval_<split>.json content) of the first saved report, test before val."""
    for split in SPLITS_SHOWN:
        path = Path(run_dir) / f"eval_{split}.json"
        if path.is_file():
            try:
                return split, json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
    return None, None


class EvaluationScreen(Screen):
    BINDINGS = [
        Binding("t", "evaluate('test')", "Eval test"),
        Binding("v", "evaluate('val')", "Eval val"),
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    EvaluationScreen #eval-table { height: 1fr; }
    EvaluationScreen #eval-roc { height: 1fr; min-height: 8; }
    EvaluationScreen #eval-progress-row { height: 1; }
    EvaluationScreen #eval-shortcut { color: $warning; height: auto; max-height: 4; }
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.report: Optional[dict] = None
        self.split: Optional[str] = None
        self.busy = False
        self.worker = None
        self._leaving = threading.Event()
        """Set when the screen goes away: the scoring worker stops at its next batch or bootstrap chunk."""

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        yield Static(id="eval-title")
        yield Static(id="eval-shortcut")
        yield DataTable(id="eval-table", zebra_stripes=True, cursor_type="row")
        yield PlotextPlot(id="eval-roc")
        with Horizontal(id="eval-progress-row"):
            yield ProgressBar(id="eval-progress", show_eta=False)
            yield Static(id="eval-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-progress-row").display = False
        split, report = saved_report(self.run_dir)
        self.show(split, report)

    def show(self, split: Optional[str], report: Optional[dict]) -> None:
        self.split, self.report = split, report
        title = self.query_one("#eval-title", Static)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if report is None:
            title.update(f" {self.run_dir.name}: not evaluated yet. Press t to score the test split "
                         "(v: validation).")
            self.query_one("#eval-shortcut", Static).display = False
            self._draw_roc(None)
            return
        title.update(f" {self.run_dir.name} - {split} split ({report.get('checkpoint', 'best')} checkpoint): "
                     f"{headline(report)}")
        shortcut = (report.get("shortcut") or {}).get("warning")
        banner = self.query_one("#eval-shortcut", Static)
        banner.update(f" shortcut: {shortcut}" if shortcut else "")
        banner.display = bool(shortcut)
        table.add_columns(*COLUMNS)
        for row in table_rows(report):
            table.add_row(*row)
        self._draw_roc(report)

    def _draw_roc(self, report: Optional[dict]) -> None:
        plt = self.query_one(PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("ROC (test split)" if self.split == "test" else "ROC")
        if report is not None:
            for name, entry in report["per_class"].items():
                if entry.get("roc"):
                    plt.plot(entry["roc"]["fpr"], entry["roc"]["tpr"], label=name[:12], marker="hd")
            plt.plot([0, 1], [0, 1], color="gray")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        self.query_one(PlotextPlot).refresh()

    def action_evaluate(self, split: str) -> None:
        if self.busy:
            self.app.notify("An evaluation is already running.", severity="warning")
            return
        from core.runs.lock import RunLockedError, check_not_locked

        try:  # scoring writes eval_*.json / thresholds.json into the run: never beside its writer (as `e`)
            check_not_locked(self.run_dir)
        except RunLockedError as err:
            self.app.notify(f"cannot score now: {err}", severity="warning", timeout=8)
            return
        self.busy = True
        self.query_one("#eval-progress-row").display = True
        self._app = self.app  # the worker may outlive the screen (and its access to the app)
        self.worker = self._evaluate(split)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def _evaluate(self, split: str) -> None:
        from core.evaluation.scoring import ScoringCancelled, evaluate_run

        def progress(done: int, total: int, desc: str) -> None:
            self._to_screen(self._progress, done, total, desc)

        try:
            report, _ = evaluate_run(self.run_dir, split, n_boot=APP_BOOTSTRAP, progress=progress,
                                     should_stop=self._leaving.is_set)
        except ScoringCancelled:
            self._to_app(f"evaluation of {self.run_dir.name} ({split}) stopped on leaving its screen: nothing "
                         "written", "warning")
            return
        except Exception as err:  # noqa: BLE001 - shown in the screen, never a crash
            self._to_screen(self._done, split, None, f"{type(err).__name__}: {err}")
            return
        if not self._to_screen(self._done, split, report, None):  # the screen went away as it finished
            self._to_app(f"eval_{split}.json and eval_{split}.md written in {self.run_dir.name}", "information")

    def _to_screen(self, fn, *args) -> bool:
        """Run fn on the UI thread while this screen is shown; False (nothing run) once it is gone."""
        if self._leaving.is_set():
            return False
        try:
            return self._app.call_from_thread(self._if_mounted, fn, *args)
        except Exception:  # noqa: BLE001 - the app is closing: nothing left to update
            return False

    def _if_mounted(self, fn, *args) -> bool:
        if not self.is_mounted or self._leaving.is_set():
            return False
        fn(*args)
        return True

    def _to_app(self, message: str, severity: str) -> None:
        try:
            self._app.call_from_thread(self._app.notify, message, severity=severity, timeout=10)
        except Exception:  # noqa: BLE001 - the app is closing
            pass

    def _progress(self, done: int, total: int, desc: str) -> None:
        self.query_one(ProgressBar).update(total=max(total, 1), progress=done)
        self.query_one("#eval-status", Static).update(f" {desc}")

    def _done(self, split: str, report: Optional[dict], error: Optional[str]) -> None:
        self.busy = False
        self.query_one("#eval-progress-row").display = False
        if error:
            self.app.notify(f"evaluation failed: {error}", severity="error", timeout=10)
            return
        self.show(split, report)
        self.app.notify(f"eval_{split}.json and eval_{split}.md written in {self.run_dir.name}")

    def on_unmount(self) -> None:
        self._leaving.set()

    def action_back(self) -> None:
        self._leaving.set()
        self.app.pop_screen()
