"""Training curves with textual-plotext: loss, the monitored metric and the learning rate."""
from __future__ import annotations

import math
import time

from textual_plotext import PlotextPlot

from ..run_state import RunState, fmt_value

COLORS = {"train/step": "cyan", "train/epoch": "blue", "val": "red"}


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
        marker = "*" if ascii else "hd"
        epochs = max(state.epochs, 1)
        getattr(self, f"_draw_{self.kind}")(plt, state, marker)
        plt.xlim(0, epochs)
        step = max(1, math.ceil(epochs / 6))
        plt.xticks(list(range(0, epochs + 1, step)))
        self.refresh()

    def _title(self, plt, full: str, short: str = "") -> None:
        self._titles = (full, short or full)

    def render(self):
        # plotext drops a title wider than the canvas: pick the one that fits the current size
        full, short = self._titles
        self.plt.title(full if len(full) <= max(0, self.size.width - 10) else short)
        return super().render()

    @property
    def max_points(self) -> int:
        """Two points per column is all a half-block/braille line can show; more only costs build time."""
        return max(60, min(240, 2 * (self.size.width or 80)))

    def _draw_loss(self, plt, state: RunState, marker: str) -> None:
        series = state.loss_series(self.max_points)
        for label, (xs, ys) in series.items():
            if label == "train/step":
                plt.plot(xs, ys, label=label, marker=marker, color=COLORS[label])
            else:
                plt.plot(xs, ys, label=label, marker=marker if len(xs) > 1 else "*", color=COLORS[label])
        self._title(plt, "Loss" if series else "Loss (waiting for the first steps)", "Loss")

    def _draw_metric(self, plt, state: RunState, marker: str) -> None:
        name, xs, ys = state.metric_series()
        if xs:
            plt.plot(xs, ys, label=name, marker=marker if len(xs) > 1 else "*", color="green")
            if state.best_value is not None and math.isfinite(state.best_value):
                plt.hline(state.best_value, color="yellow")
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
            plt.plot(xs, [y / scale for y in ys], label="lr", marker=marker, color="magenta")
            self._title(plt, f"Learning rate (x1e{exp})", f"LR x1e{exp}")
        else:
            self._title(plt, "Learning rate", "LR")
