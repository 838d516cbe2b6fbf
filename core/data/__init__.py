"""Dataset registry: one module per source registers a builder `fn(config, progress) -> DatasetBundle`."""
from __future__ import annotations

from typing import Callable, Optional

from .base import ArrayTable, DataError, DatasetBundle, ImageTable, LoaderTable, ProgressFn

_BUILDERS: dict[str, Callable] = {}


def register_dataset(name: str):
    """Decorator: make a builder available as `--dataset NAME`."""

    def wrap(fn):
        _BUILDERS[name] = fn
        return fn

    return wrap


def dataset_names() -> list[str]:
    _import_sources()
    return sorted(_BUILDERS)


def load_dataset(config, progress: Optional[ProgressFn] = None) -> DatasetBundle:
    """Build the dataset named by config.dataset (config is a resolved TrainConfig)."""
    _import_sources()
    builder = _BUILDERS.get(config.dataset)
    if builder is None:
        raise DataError(f"dataset: unknown dataset '{config.dataset}'. Allowed: {', '.join(sorted(_BUILDERS))}")
    return builder(config, progress or (lambda done, total, desc: None))


def _import_sources() -> None:
    """Import every source module so their @register_dataset decorators run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["ArrayTable", "DataError", "DatasetBundle", "ImageTable", "LoaderTable", "ProgressFn",
           "register_dataset", "dataset_names", "load_dataset"]
