"""Training curves with textual-plotext: loss, the monitored metric and the learning rate."""
from __future__ import annotations

import math
import time

from rich.text import Text
from textual_plotext import PlotextPlot

from ..run_state import RunState, fmt_value

COLORS = {"train/step": "cyan", "train/epoch": "blue", "val": "red"}
LETTERS = {"train/step": "s", "train/epoch": "e", "val": "v"}
"""ASCII markers: the three loss series told apart without colour (legend: s train/step, ...)."""
SHORT_LABELS = {"train/step": "step", "train/epoch": "epoch"}


STEP_REDRAW_S = 3.0
"""New steps alone redraw a chart at most this often (plot builds are the UI's main cost)."""


class CurvePlot(PlotextPlot):
    """One chart of a RunState; `kind` is loss, metric or lr. Redraws only when its data changed."""

    TITLES = {"loss": "Loss", "metric": "Metric", "lr": "Learning rate"}

    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.ascii = False
        self._drawn = None
        self._titles = ("", "")
        self._legend: list[tuple[str, str, str]] = []
        """(label, colour, ASCII marker) per series: drawn on the title row, never over the lines."""
        self._drawn_at = 0.0

    def draw(self, state: RunState, ascii: bool = False, force: bool = False) -> None:
        key = (state.curve_version, state.best_value, state.monitor, state.epochs, ascii, id(state))
        if key == self._drawn:
            return
        steps_only = (self._drawn is not None and key[1:] == self._drawn[1:] and not state.finished
                      and len(state.epoch_log) == getattr(self, "_drawn_epochs", -1))
        if steps_only and not force and time.monotonic() - self._drawn_at < STEP_REDRAW_S:
            return  # drawn on a later tick
        self._drawn = key
        self._drawn_epochs = len(state.epoch_log)
        self._drawn_at = time.monotonic()
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.ascii = ascii
        self._legend = []
        marker = "*" if ascii else "hd"
        epochs = max(state.epochs, 1)
        getattr(self, f"_draw_{self.kind}")(plt, state, marker)
        plt.xlim(0, epochs)
        step = max(1, math.ceil(epochs / 6))
        plt.xticks(list(range(0, epochs + 1, step)))
        self.refresh()

    def _title(self, plt, full: str, short: str = "") -> None:
        self._titles = (full, short or full)

    def _series(self, plt, xs, ys, label: str, color: str, marker: str, letter: str = "*") -> None:
        """One line, labelled in our legend (plotext's own legend is drawn over the data)."""
        if self.ascii:
            marker = letter
        elif len(xs) < 2:
            marker = "*"  # a single point drawn as half-block dots is invisible
        plt.plot(xs, ys, marker=marker, color=color)
        self._legend.append((label, color, letter))

    def legend_line(self, width: int) -> Text:
        """The title and a sample of each series in its colour (its letter in ASCII mode), centred on the
        plot's first row. When it does not fit: the short title, short labels and one-cell samples, the title
        alone, and last the legend alone."""
        full, short = self._titles

        def build(title: str, short_labels: bool, sample: str) -> Text:
            line = Text(title, style="bold")
            for label, color, letter in (self._legend if sample else []):
                if line:
                    line.append("  " if sample != "─" else " ")
                line.append(f"{letter} " if self.ascii else f"{sample} ", style=f"bold {color}")
                line.append(SHORT_LABELS.get(label, label) if short_labels else label)
            return line

        candidates = [(full, False, "──"), (short, False, "──"), (short, True, "─"), (short, True, ""),
                      ("", True, "─")]  # the title outlives the legend: it names the chart
        line = Text()
        for title, short_labels, sample in candidates:
            line = build(title, short_labels, sample)
            if line.cell_len <= width:
                break
        line.truncate(width)
        pad = max(0, width - line.cell_len)
        return Text(" " * (pad // 2)) + line + Text(" " * (pad - pad // 2))

    def render(self):
        self.plt.title(".")  # keeps plotext's title row (a blank title would not); legend_line replaces it
        plot = super().render()
        lines = plot.split("\n", allow_blank=True)
        if not lines:
            return plot
        return Text("\n").join([self.legend_line(self.size.width), *lines[1:]])

    @property
    def max_points(self) -> int:
        """Two points per column is all a half-block/braille line can show; more only costs build time."""
        return max(60, min(240, 2 * (self.size.width or 80)))

    def _draw_loss(self, plt, state: RunState, marker: str) -> None:
        series = state.loss_series(self.max_points)
        for label, (xs, ys) in series.items():
            self._series(plt, xs, ys, label, COLORS[label], marker, LETTERS[label])
        self._title(plt, "Loss" if series else "Loss (waiting for the first steps)", "Loss")

    def _draw_metric(self, plt, state: RunState, marker: str) -> None:
        name, xs, ys = state.metric_series()
        if xs:
            self._series(plt, xs, ys, name, "green", marker, "*")
            self._legend.clear()  # the title names the one metric line; the legend only says which is best
            if state.best_value is not None and math.isfinite(state.best_value):
                plt.hline(state.best_value, color="yellow")
                self._legend.append(("best", "yellow", "-"))
            self._title(plt, f"{name} (best {fmt_value(state.best_value)} @ epoch {state.best_epoch or '-'})",
                        f"{name} best {fmt_value(state.best_value, 3)}")
        else:
            self._title(plt, f"{name} (after the first validation)", name)

    def _draw_lr(self, plt, state: RunState, marker: str) -> None:
        xs, ys = state.lr_series(self.max_points)
        peak = max((y for y in ys if y > 0), default=0.0)
        if xs and peak > 0:
            exp = math.floor(math.log10(peak))
            scale = 10.0 ** exp
            self._series(plt, xs, [y / scale for y in ys], "lr", "magenta", marker, "l")
            self._title(plt, f"Learning rate (x1e{exp})", f"LR x1e{exp}")
        else:
            self._title(plt, "Learning rate", "LR")
