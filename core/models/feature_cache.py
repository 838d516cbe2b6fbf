"""On-disk cache of a frozen backbone's pooled features, for linear probes without augmentation.

A linear probe trains only the head, so the backbone's output for an image never changes during a
run, nor between runs that share the model, its weights, the pixels and the image size. Computing
it once and reading it back turns every epoch after the first (and every later run) into a pass
over a small matrix. The key covers exactly what the features depend on:

    timm model name, a digest of the backbone's weights (pretrained file or seeded random init,
    BatchNorm statistics included), the image size, the autocast dtype, and a digest of the
    split's pixels in order.

Files: `<dir>/<key>.npy` (float32, one row per image, written to a temporary name then renamed, so
an interrupted run never leaves half a cache) and `<key>.json` (what the key was made of).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from core.data.base import ArrayTable, ImageTable, SubsetTable, in_memory

FORMAT = 1
SUBDIR = "features"


def weights_digest(module: nn.Module) -> str:
    """Digest of every parameter and buffer (names, dtypes, shapes, values), in state-dict order."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def pixels_digest(table: ImageTable) -> str:
    """Digest of the split's pixels in order. Tables that decode on demand (no pixel cache yet)
    are keyed by their ids instead: reading every file just to hash it would cost a decode."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{len(table)}|".encode())
    if in_memory(table):
        rows = _array_rows(table)
        if rows is not None:
            images, index = rows
            for start in range(0, len(index), 1024):
                h.update(np.ascontiguousarray(images[index[start:start + 1024]]).tobytes())
            return h.hexdigest()
        for i in range(len(table)):
            h.update(np.ascontiguousarray(table.image(i)).tobytes())
        return h.hexdigest()
    h.update(b"ids|")
    for name in table.ids:
        h.update(name.encode() + b"\0")
    return h.hexdigest()


def _array_rows(table: ImageTable) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(backing array, row per image) for an ArrayTable or a subset of one, else None."""
    if isinstance(table, SubsetTable):
        inner = _array_rows(table.parent)
        if inner is None:
            return None
        images, rows = inner
        return images, rows[table.indices]
    if isinstance(table, ArrayTable):
        rows = getattr(table, "rows", None)
        return table.images, (np.asarray(rows) if rows is not None else np.arange(len(table.images)))
    return None


@dataclass(frozen=True)
class FeatureKey:
    model: str
    weights: str
    img_size: int
    amp_dtype: str
    pixels: str

    def digest(self) -> str:
        text = json.dumps({"format": FORMAT, **vars(self)}, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class FeatureCache:
    """One folder of cached feature matrices."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, key: FeatureKey) -> Path:
        return self.directory / f"{key.digest()}.npy"

    def load(self, key: FeatureKey, rows: int) -> Optional[torch.Tensor]:
        """The cached (rows, dim) float32 features, or None when absent or not the right shape."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            feats = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if feats.ndim != 2 or feats.shape[0] != rows or feats.dtype != np.float32:
            return None
        return torch.from_numpy(np.array(feats))

    def save(self, key: FeatureKey, feats: torch.Tensor) -> Path:
        """Write atomically (temporary name, then rename) with a JSON note of the key beside it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        try:
            np.save(tmp, feats.detach().float().cpu().numpy(), allow_pickle=False)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta = {**vars(key), "format": FORMAT, "rows": int(feats.shape[0]), "dim": int(feats.shape[1])}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return path


def feature_dir(data_dir: Optional[str], cache_dir: Optional[str], output_dir: str) -> Path:
    """Next to the pixel cache when the data has a folder (or --cache_dir is set); otherwise under
    the runs folder, so later runs in the same output folder reuse it (built-in phantoms)."""
    if cache_dir or data_dir:
        from core.data.cache import cache_root

        return cache_root(data_dir, cache_dir)[0] / SUBDIR
    return Path(output_dir) / ".medcls_cache" / SUBDIR
