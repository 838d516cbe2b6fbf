"""Keep the training thread fast while the UI thread shares its process (and its GIL).

The engine releases the GIL inside every torch op and must take it back between ops. When the UI
thread is mid-redraw at that moment, CPython makes the training thread wait a whole switch interval
(5 ms by default) before it may ask for the GIL back; a few of those per step cost several percent
of a small model's throughput (bench/tui_overhead.py). A shorter interval while a run is live
bounds that wait; the default is restored when the run ends.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

TRAINING_SWITCH_INTERVAL_S = 0.0005


@contextmanager
def training_switch_interval(interval_s: float = TRAINING_SWITCH_INTERVAL_S) -> Iterator[None]:
    """Lower the interpreter's thread switch interval for the duration of a run, then restore it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval_s))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
