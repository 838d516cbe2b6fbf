"""One small registry type for every "name -> factory" table (datasets, losses, batch strategies),
so adding a dataset, loss or augmentation is one decorated function, never a new if-branch.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Generic, Iterable, TypeVar

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


def declared_names(paths: Iterable[Path], decorator: str) -> set[str]:
    """Names registered with `@decorator("name")` in these source files, read without importing them.

    Showing or checking a config only needs the *names* of the datasets, losses and augmentations;
    importing their modules pulls in torch (seconds). tests/test_startup.py checks that these names
    equal the imported registries' names, so the two never drift.
    """
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == decorator
                        and deco.args and isinstance(deco.args[0], ast.Constant)):
                    names.add(str(deco.args[0].value))
    return names

