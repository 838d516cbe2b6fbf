"""App-level settings of the TUI (not training settings: those live in TrainConfig)."""
from __future__ import annotations

import locale
import os
import sys
from dataclasses import dataclass, field
from typing import Optional


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _ascii_default() -> bool:
    """ASCII-safe drawing when asked (MEDCLS_ASCII=1) or when the terminal encoding is not UTF-8."""
    flag = os.environ.get("MEDCLS_ASCII")
    if flag is not None:
        return flag not in ("", "0", "false", "no")
    encoding = (getattr(sys.stdout, "encoding", None) or locale.getpreferredencoding(False) or "").lower()
    return "utf" not in encoding


@dataclass
class AppSettings:
    stable: bool = False
    """Hide values that change per run (times, img/s, dates, paths): snapshot tests set this."""
    refresh_hz: float = field(default_factory=lambda: _env_float("MEDCLS_TUI_HZ", 1.0))
    """Redraws per second of the live screen. 1/s keeps SSH traffic low and the training thread within
    a few percent of headless speed on a 2-core box (bench/RESULTS.md, TUI overhead); range 0.5-30."""
    ascii: bool = field(default_factory=_ascii_default)
    """ASCII borders and plot markers for terminals that cannot draw box/braille characters."""
    vram_gib: Optional[float] | str = "detect"
    """GPU memory the tips assume: 'detect' (the app's hardware reading), None = CPU, or GiB."""
    probe_time_budget_s: float = 60.0
    """Time the measured batch-size probe may take."""

    @property
    def refresh_interval(self) -> float:
        return 1.0 / max(0.5, min(30.0, self.refresh_hz))
