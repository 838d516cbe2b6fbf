"""From parsed label rows to a DatasetBundle: find files, cache pixels, drop what failed, split.

Every file-based source (nih, covidx, vinbigdata, csv, and folder when it switches over) only
parses its label format into `Record`s; this module does the rest identically for all of them,
so skipping, caching, patient splits and the "zero usable images" error behave the same way
whatever the format.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from core.data.base import DataError, DatasetBundle, ImageTable, LoaderTable, ProgressFn, data_seed
from core.data.cache import CachedTable, build_cache, cache_root
from core.data.decode import DICOM_SUFFIXES, load_resized, require_pydicom
from core.data.splits import split_by_patient

_INDEXERS: dict[str, Callable[[Any], "SourceIndex"]] = {}

SPLITS = ("train", "val", "test", "trainval")
"""`trainval` rows are divided into train/val by patient with config.val_fraction."""


@dataclass
class Record:
    """One labelled image as a label file describes it."""

    path: Optional[Path]
    """Resolved image file, or None when no file was found for the name."""
    id: str
    target: Any
    """int class index (single-label) or a sequence of 0/1 per class (multi-label)."""
    domain: str = "default"
    patient: Optional[str] = None
    split: str = "trainval"
    where: str = ""
    """'file:line' of the label row, for messages."""


@dataclass
class SourceIndex:
    """A parsed dataset before any pixel is read."""

    name: str
    classes: list[str]
    multi_label: bool
    records: list[Record]
    label_file: Path
    """The file errors should name (e.g. Data_Entry_2017_v2020.csv)."""
    root: Path
    """Dataset root: cache keys are relative to it."""
    domain_names: Optional[list[str]] = None
    """Fixed domain order; default: sorted domains seen."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def register_index(name: str):
    """Decorator: the label-only parser of a file source, so statistics can skip decoding."""

    def wrap(fn):
        _INDEXERS[name] = fn
        return fn

    return wrap


def load_labels_only(config, progress: Optional[ProgressFn] = None) -> DatasetBundle:
    """A bundle whose tables decode lazily (nothing is read up front): for statistics.

    In-memory sources (synthetic) have no index and are simply built.
    """
    from core.data import dataset_names, load_dataset

    dataset_names()  # imports every source, registering their indexers
    progress = progress or (lambda done, total, desc: None)
    if config.dataset not in _INDEXERS:
        return load_dataset(config, progress)
    return assemble(_INDEXERS[config.dataset](config), config, progress, cache=False)


def resolve_in(path_str: str, data_dir: Optional[str]) -> Path:
    """A user-given path: absolute, relative to the cwd if it exists there, else under data_dir."""
    p = Path(path_str).expanduser()
    if p.is_absolute() or p.exists() or not data_dir:
        return p
    return Path(data_dir).expanduser() / p


def require_data_dir(config, dataset: str, layout: str) -> Path:
    if not config.data_dir:
        raise DataError(f"data_dir: --dataset {dataset} needs --data_dir DIR ({layout})")
    root = Path(config.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data_dir: folder not found: {root}")
    return root


def scan_files(folders: Iterable[Path], suffixes: Optional[set[str]] = None, recursive: bool = False) -> dict[str, Path]:
    """file name -> path over the given folders (first folder wins); hidden folders are skipped."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        stack = [folder]
        while stack:
            current = stack.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=True):
                    if recursive:
                        stack.append(Path(entry.path))
                elif suffixes is None or os.path.splitext(entry.name)[1].lower() in suffixes:
                    found.setdefault(entry.name, Path(entry.path))
    return found


def assemble(index: SourceIndex, config, progress: ProgressFn, cache: bool = True) -> DatasetBundle:
    """Cache pixels (cache=True) or decode lazily (cache=False: statistics only), then split."""
    records = index.records
    skipped = list(index.skipped)
    notes = list(index.notes)
    present: list[int] = []
    for i, r in enumerate(records):
        if r.path is None or not r.path.is_file():
            skipped.append((str(r.path) if r.path is not None else r.id, "missing file"))
        else:
            present.append(i)
    if any(records[i].path.suffix.lower() in DICOM_SUFFIXES for i in present):
        require_pydicom(f"{index.label_file}: DICOM images")
    size = int(config.img_size or 224)

    unique_paths = list(dict.fromkeys(records[i].path for i in present))
    row_of = {p: k for k, p in enumerate(unique_paths)}
    if cache and unique_paths:
        root, note = cache_root(config.data_dir, config.cache_dir)
        if note:
            notes.append(note)
        result = build_cache(unique_paths, root / f"{index.name}_{size}px", size, root=index.root,
                             progress=progress, workers=getattr(config, "num_workers", None) or None,
                             description=f"caching {index.name} images at {size}px")
        for k, reason in result.failures.items():
            skipped.append((str(unique_paths[k]), reason))
        ok_rows = result.ok
        notes.append(f"pixel cache: {result.directory} ("
                     + (f"decoded {result.decoded}, reused {result.reused}" if result.decoded else "valid, reused")
                     + f", {len(result.failures)} undecodable)")
    else:
        result = None
        ok_rows = np.ones(len(unique_paths), dtype=bool)
    usable = [i for i in present if ok_rows[row_of[records[i].path]]]
    if not usable:
        raise DataError(_zero_usable_message(index, skipped))

    domain_names = index.domain_names or sorted({records[i].domain for i in usable})
    domain_id = {d: k for k, d in enumerate(domain_names)}
    kept = [records[i] for i in usable]
    targets = _targets(kept, index.multi_label, len(index.classes))
    domains = np.array([domain_id[r.domain] for r in kept], dtype=np.int64)
    ids = [r.id for r in kept]
    patients = [r.patient for r in kept] if any(r.patient for r in kept) else None
    rows = np.array([row_of[r.path] for r in kept], dtype=np.int64)
    table: ImageTable
    if result is not None:
        table = CachedTable(result.images_file, targets, domains, ids, patients,
                            rows=None if _identity(rows, len(unique_paths)) else rows, images=result.images)
    else:
        paths = [r.path for r in kept]
        table = LoaderTable(lambda j: load_resized(paths[j], size), targets, domains, ids, patients)

    split_idx = _split(kept, config, index.multi_label)
    if len(split_idx["train"]) == 0:
        raise DataError(f"{index.label_file}: no usable training images after the split "
                        f"({len(kept)} usable images, val_fraction={config.val_fraction})")
    return DatasetBundle(
        name=index.name, classes=list(index.classes), multi_label=index.multi_label,
        train=table.subset(split_idx["train"]), val=table.subset(split_idx["val"]),
        test=table.subset(split_idx["test"]) if len(split_idx["test"]) else None,
        domain_names=list(domain_names), skipped=skipped, notes=notes,
    )


def _identity(rows: np.ndarray, n: int) -> bool:
    return len(rows) == n and bool(np.all(rows == np.arange(n)))


def _targets(records: Sequence[Record], multi_label: bool, num_classes: int) -> np.ndarray:
    if multi_label:
        arr = np.zeros((len(records), num_classes), dtype=np.float32)
        for k, r in enumerate(records):
            arr[k] = np.asarray(r.target, dtype=np.float32)
        return arr
    return np.array([int(r.target) for r in records], dtype=np.int64)


def _split(records: Sequence[Record], config, multi_label: bool) -> dict[str, np.ndarray]:
    """Fixed splits as given; `trainval` rows divided by patient (stratified by class if single-label)."""
    by_split = {s: [] for s in SPLITS}
    for k, r in enumerate(records):
        by_split[r.split].append(k)
    out = {s: np.array(by_split[s], dtype=np.int64) for s in ("train", "val", "test")}
    trainval = np.array(by_split["trainval"], dtype=np.int64)
    if len(trainval):
        strata = None if multi_label else [int(records[k].target) for k in trainval]
        keep, held = split_by_patient([records[k].patient for k in trainval], config.val_fraction, data_seed(config),
                                      strata=strata)
        out["train"] = np.sort(np.concatenate([out["train"], trainval[keep]]))
        out["val"] = np.sort(np.concatenate([out["val"], trainval[held]]))
    return out


def _zero_usable_message(index: SourceIndex, skipped: list[tuple[str, str]]) -> str:
    n = len(index.records)
    if not skipped:
        return f"{index.label_file}: resolves to zero usable images (no rows)"
    missing = sum(1 for _, reason in skipped if reason == "missing file")
    first = "; ".join(f"{name}: {reason}" for name, reason in skipped[:3])
    return (f"{index.label_file}: resolves to zero usable images ({n} rows, {missing} missing files, "
            f"{len(skipped) - missing} other problems; first: {first}). Check --data_dir {index.root}")
