"""One line under the live charts: GPU use and memory, CPU and RAM of the run, loader wait.

Reads RunState.system (the engine's SystemStats, core/hardware/system_stats.py); hidden until the first sample,
so a run that has not stepped yet shows no empty line. "GPU starved" when the loop waits for
batches more than half of each step.
"""
from __future__ import annotations

from typing import Any, Optional

from rich.text import Text
from textual.widgets import Static

from ..run_state import RunState


def _pct(value: Optional[float]) -> str:
    return "--" if value is None else f"{value:.0f}%"


def _gib(value: Optional[float]) -> str:
    return "--" if value is None else f"{value:.1f}G"


def system_text(stats: Any) -> Text:
    """At most ~72 columns: fits the 80-column live screen with its padding."""
    text = Text(" ")
    if stats is None:
        return text
    if getattr(stats, "on_gpu", False) or stats.gpu_util_pct is not None:
        util = stats.gpu_util_pct
        text.append("GPU ", style="bold")
        text.append(_pct(util), style="green" if (util or 0) >= 80 else "yellow")
        text.append(f" {_gib(stats.gpu_mem_used_gib)[:-1]}/{_gib(stats.gpu_mem_total_gib)}  ")
    text.append("CPU ", style="bold")
    text.append(f"{_pct(stats.cpu_pct)} RAM {_gib(stats.rss_gib)}  ")
    frac = f"{100 * (stats.loader_wait_frac or 0):.0f}%"
    if stats.starved:
        label = "GPU starved" if getattr(stats, "on_gpu", False) else "input-bound"
        text.append(f"{label}: loader wait {frac}", style="bold red")
    else:
        text.append(f"loader wait {frac} ({1000 * (stats.loader_wait_s or 0):.0f} ms/step)", style="dim")
    return text


class SystemMonitorBar(Static):
    """The run's machine use, redrawn only when a new sample arrived."""

    DEFAULT_CSS = """
    SystemMonitorBar {
        height: 1;
        display: none;
    }
    SystemMonitorBar.-shown {
        display: block;
    }
    """

    def show(self, state: RunState) -> None:
        stats = state.system
        if stats is getattr(self, "_shown", None):
            return
        self._shown = stats
        self.set_class(stats is not None, "-shown")
        self.update(system_text(stats))
