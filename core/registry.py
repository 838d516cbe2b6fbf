"""One small registry type for every "name -> factory" table (datasets, losses, batch strategies),
so adding a dataset, loss or augmentation is one decorated function, never a new if-branch.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, key: str):
        self.key = key
        """The config key that selects an entry (used in error messages)."""
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            self._entries[name] = fn
            return fn

        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, error: type[Exception] = ValueError) -> F:
        if name not in self._entries:
            raise error(f"{self.key}: unknown {self.key} '{name}'. Allowed: {', '.join(self.names())}")
        return self._entries[name]
