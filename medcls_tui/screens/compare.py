"""Compare marked runs: their validation curves overlaid on one chart, and the comparison table of
`medcls compare` (paired bootstrap, DeLong), scored in a worker thread."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from ..widgets.header import MedclsHeader

COLORS = ("cyan", "magenta", "green", "yellow", "red", "blue")
APP_BOOTSTRAP = 200
"""Resamples in the app (seconds, not minutes); `medcls compare` defaults to 1000."""


def validation_curves(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one validation metric from a run's metrics.jsonl (resumed epochs once)."""
    from core.runs.folder import read_metrics

    xs, ys = [], []
    for record in read_metrics(run_dir):
        if record.get("event") == "EpochDone":
            value = (record.get("metrics") or {}).get(metric)
            if isinstance(value, (int, float)):
                xs.append(int(record["epoch"]))
                ys.append(float(value))
    return xs, ys


class CompareScreen(Screen):
    BINDINGS = [
        Binding("l", "toggle_metric", "AUROC/loss"),
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-plot { height: 1fr; min-height: 8; }
    CompareScreen #compare-table { height: 1fr; }
    CompareScreen #compare-status { height: auto; }
    """

    def __init__(self, run_dirs: list[Path]) -> None:
        super().__init__()
        self.run_dirs = [Path(p) for p in run_dirs]
        self.metric = "val_auroc"
        self.result: Optional[dict] = None
        self.error: Optional[str] = None
        self.series: list[str] = []
        self._leaving = threading.Event()

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        yield Static(id="compare-title")
        yield PlotextPlot(id="compare-plot")
        yield Static(id="compare-status")
        yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        names = ", ".join(p.name for p in self.run_dirs)
        self.query_one("#compare-title", Static).update(f" {len(self.run_dirs)} runs: {names} "
                                                        f"(A = {self.run_dirs[0].name})")
        self.draw()
        self.query_one("#compare-status", Static).update(" scoring the test split of each run ...")
        threading.Thread(target=self._score, name="medcls-compare", daemon=True).start()

    def draw(self) -> None:
        plt = self.query_one(PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        self.series = []
        for k, run_dir in enumerate(self.run_dirs):
            xs, ys = validation_curves(run_dir, self.metric)
            if xs:
                plt.plot(xs, ys, marker="hd" if len(xs) > 1 else "*", color=COLORS[k % len(COLORS)],
                         label=run_dir.name[:18])
                self.series.append(run_dir.name)
        plt.title(f"validation {self.metric.removeprefix('val_')} per epoch")
        self.query_one(PlotextPlot).refresh()

    def action_toggle_metric(self) -> None:
        self.metric = "val_loss" if self.metric == "val_auroc" else "val_auroc"
        self.draw()

    def _score(self) -> None:
        from core.evaluation.compare import compare_runs
        from core.evaluation.compare_scoring import score_run
        from core.evaluation.scoring import ScoringCancelled, stoppable

        progress = stoppable(lambda d, t, desc: None, self._leaving.is_set)
        try:
            groups = [[score_run(p, "test", "best", "cpu", progress)] for p in self.run_dirs]
            result, error = compare_runs(groups, "test", APP_BOOTSTRAP), None
        except ScoringCancelled:
            return
        except Exception as err:  # noqa: BLE001 - shown on the screen, the app stays up
            result, error = None, f"{type(err).__name__}: {err}"
        if not self._leaving.is_set():
            self.app.call_from_thread(self._show, result, error)

    def _show(self, result: Optional[dict], error: Optional[str]) -> None:
        if not self.is_mounted:
            return
        self.result, self.error = result, error
        status = self.query_one("#compare-status", Static)
        if error:
            status.update(f" cannot compare: {error}")
            return
        status.update(f" test split, {result['images']['shared_images']} shared images; B - A with paired "
                      f"bootstrap 95% CI ({APP_BOOTSTRAP} resamples) and DeLong p")
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("B", "class", "AUROC A", "AUROC B", "diff", "95% CI", "p")
        for comp in result["comparisons"]:
            for name, e in [*comp["per_class"].items(), ("macro", comp["macro"])]:
                ci = e.get("ci")
                table.add_row(",".join(comp["b"])[:14], name[:12], _f(e.get("auroc_a")), _f(e.get("auroc_b")),
                              f"{e['difference']:+.3f}" if e.get("difference") is not None else "-",
                              f"{ci[0]:.3f},{ci[1]:.3f}" if ci else "-",
                              _p(e.get("delong_p")))

    def on_unmount(self) -> None:
        self._leaving.set()

    def action_back(self) -> None:
        self.app.pop_screen()


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _p(value) -> str:
    return "-" if value is None else ("<.001" if value < 0.001 else f"{value:.3f}")
