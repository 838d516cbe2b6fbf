"""Dataset registry: one module per source registers a builder `fn(config, progress) -> DatasetBundle`."""
from __future__ import annotations

from typing import Optional

from core.config.registry import Registry
from core.data.base import ArrayTable, DataError, DatasetBundle, ImageTable, LoaderTable, ProgressFn

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register
"""Decorator: make a builder available as `--dataset NAME`."""


def dataset_names() -> list[str]:
    _import_sources()
    return DATASETS.names()


def load_dataset(config, progress: Optional[ProgressFn] = None) -> DatasetBundle:
    """Build the dataset named by config.dataset (config is a resolved TrainConfig)."""
    _import_sources()
    bundle = DATASETS.get(config.dataset, DataError)(config, progress or (lambda done, total, desc: None))
    if getattr(config, "holdout_domain", None) is not None:
        from core.data.splits import hold_out_domain

        bundle = hold_out_domain(bundle, config.holdout_domain)
    return bundle


def _import_sources() -> None:
    """Import every source module so their @register_dataset decorators run."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["ArrayTable", "DataError", "DatasetBundle", "ImageTable", "LoaderTable", "ProgressFn",
           "register_dataset", "dataset_names", "load_dataset"]
