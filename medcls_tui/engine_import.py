"""The engine's import (torch, timm: seconds) in the background, serialized with the picker's checks.

CPython 3.11 keeps the AST converter's recursion depth per interpreter, not per thread: two threads
that parse or compile at once (torch's import runs `ast`; pydantic reads docstrings with `ast`) can
fail with `SystemError: AST constructor recursion depth mismatch`, which the picker then showed as a
config error. Everything that imports or resolves the engine from a thread takes ENGINE_LOCK, so at
most one of them runs at a time.
"""
from __future__ import annotations

import importlib
import threading

ENGINE_LOCK = threading.RLock()
"""Held while the engine is imported and while the picker resolves a config."""


def _import() -> None:
    importlib.import_module("core.training.trainer")


def import_engine() -> None:
    """Import core.training.trainer (and torch with it) under ENGINE_LOCK."""
    with ENGINE_LOCK:
        _import()
