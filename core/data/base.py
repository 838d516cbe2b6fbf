"""What every dataset source hands the engine: splits of (uint8 HxW image, target, domain id).

Sources differ in how they find files and labels; after this point everything is the same, so
caching, augmentation, statistics and the UI never care where the pixels came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np


class DataError(ValueError):
    """Bad data on disk or in a label file; the message names the file (and line) and what is allowed."""


class ImageTable:
    """One split. `image(i)` returns a uint8 HxW array already at the training resolution.

    targets: int64 (N,) class indices for single-label, float32 (N, C) multi-hot for multi-label.
    domains: int64 (N,) domain ids (index into DatasetBundle.domain_names).
    ids: a human-readable id per image (file name) for reports.
    patients: patient id per image where known (leakage checks), else None.
    """

    targets: np.ndarray
    domains: np.ndarray
    ids: list[str]
    patients: Optional[list[str]]

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> "ImageTable":
        return SubsetTable(self, np.asarray(indices, dtype=np.int64))


class ArrayTable(ImageTable):
    """Images held in one (N, H, W) uint8 array (synthetic data, or a memmap cache)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, domains: np.ndarray,
                 ids: Optional[list[str]] = None, patients: Optional[list[str]] = None):
        assert images.ndim == 3 and images.dtype == np.uint8, "images must be (N, H, W) uint8"
        self.images = images
        self.targets = targets
        self.domains = np.asarray(domains, dtype=np.int64)
        self.ids = ids if ids is not None else [f"img_{i:06d}" for i in range(len(images))]
        self.patients = patients

    def image(self, index: int) -> np.ndarray:
        return np.asarray(self.images[index])


class SubsetTable(ImageTable):
    def __init__(self, parent: ImageTable, indices: np.ndarray):
        self.parent = parent
        self.indices = indices
        self.targets = parent.targets[indices]
        self.domains = parent.domains[indices]
        self.ids = [parent.ids[i] for i in indices]
        self.patients = [parent.patients[i] for i in indices] if parent.patients is not None else None

    def image(self, index: int) -> np.ndarray:
        return self.parent.image(int(self.indices[index]))


class ConcatTable(ImageTable):
    """Several tables read as one, in order (e.g. train and val pooled before regrouping by domain)."""

    def __init__(self, tables: Sequence[ImageTable]):
        self.tables = list(tables)
        self.offsets = np.cumsum([0] + [len(t) for t in self.tables])
        self.targets = np.concatenate([t.targets for t in self.tables])
        self.domains = np.concatenate([t.domains for t in self.tables]).astype(np.int64)
        self.ids = [i for t in self.tables for i in t.ids]
        known = all(t.patients is not None for t in self.tables)
        self.patients = [p for t in self.tables for p in t.patients] if known else None

    def image(self, index: int) -> np.ndarray:
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.tables[part].image(index - int(self.offsets[part]))


def in_memory(table: ImageTable) -> bool:
    """True when every image already sits in an array: loader worker processes would only add start-up."""
    if isinstance(table, SubsetTable):
        return in_memory(table.parent)
    if isinstance(table, ConcatTable):
        return all(in_memory(t) for t in table.tables)
    return isinstance(table, ArrayTable)


class LoaderTable(ImageTable):
    """Images produced on demand by a function (decoding files); used before a cache exists."""

    def __init__(self, load: Callable[[int], np.ndarray], targets: np.ndarray, domains: np.ndarray,
                 ids: list[str], patients: Optional[list[str]] = None):
        self._load = load
        self.targets = targets
        self.domains = np.asarray(domains, dtype=np.int64)
        self.ids = ids
        self.patients = patients

    def image(self, index: int) -> np.ndarray:
        return self._load(index)


@dataclass
class DatasetBundle:
    """Everything the engine needs from a dataset, independent of its on-disk format."""

    name: str
    classes: list[str]
    multi_label: bool
    train: ImageTable
    val: ImageTable
    test: Optional[ImageTable] = None
    domain_names: list[str] = field(default_factory=lambda: ["default"])
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for images that could not be used; written to skipped_images.txt."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks (e.g. unmapped label rows, fallbacks)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Images per class (positives per finding for multi-label) in a split."""
        table = getattr(self, split)
        if self.multi_label:
            return np.asarray(table.targets, dtype=np.float64).sum(axis=0)
        return np.bincount(np.asarray(table.targets, dtype=np.int64), minlength=self.num_classes).astype(np.float64)


ProgressFn = Callable[[int, int, str], None]
"""progress(done, total, description): long data work reports through this."""


def data_seed(config) -> int:
    """The seed of a run's data (phantoms, splits): `data_seed` when set, else the training `seed`."""
    return config.data_seed if getattr(config, "data_seed", None) is not None else config.seed
