"""The engine's event callback for the TUI: append under a lock and return.

The training thread calls the buffer once per event (every step); the UI drains it on a timer
a few times per second and redraws once per tick, so the loop never waits for the UI
(docs/TUI.md "Training in a worker thread without flooding the UI").
"""
from __future__ import annotations

import threading
from typing import Any


class EventBuffer:
    """Thread-safe FIFO of engine events. `buffer(event)` is the engine's `on_event`."""

    __slots__ = ("_items", "_lock", "appended")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self.appended = 0
        """Events received so far (for tests and the overhead benchmark)."""

    def __call__(self, event: Any) -> None:
        with self._lock:
            self._items.append(event)
            self.appended += 1

    def drain(self) -> list[Any]:
        """Everything received since the last drain, oldest first (swaps the list: O(1) under the lock)."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def pending(self) -> int:
        # Deliberately not __len__: an empty buffer must stay truthy (`on_event or default`).
        with self._lock:
            return len(self._items)
