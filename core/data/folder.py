"""`--dataset folder --data_dir DIR`: one sub-folder per class, the layout users already have."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import register_dataset
from .base import DataError, DatasetBundle, LoaderTable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"}


def _decode_resized(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("L")
        return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)


@register_dataset("folder")
def build(config, progress) -> DatasetBundle:
    if not config.data_dir:
        raise DataError("data_dir: --dataset folder needs --data_dir DIR with one sub-folder per class")
    root = Path(config.data_dir)
    if not root.is_dir():
        raise DataError(f"data_dir: folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: expected at least 2 class sub-folders, found {classes or 'none'}")
    paths, targets = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(f)
                targets.append(c)
    if not paths:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders")
    size = config.img_size or 224
    targets_arr = np.asarray(targets, dtype=np.int64)
    ids = [str(p.relative_to(root)) for p in paths]
    table = LoaderTable(lambda i: _decode_resized(paths[i], size), targets_arr,
                        np.zeros(len(paths), dtype=np.int64), ids)
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(len(paths))
    n_val = max(1, int(round(config.val_fraction * len(paths))))
    return DatasetBundle(name="folder", classes=classes, multi_label=False,
                         train=table.subset(perm[n_val:]), val=table.subset(perm[:n_val]))
