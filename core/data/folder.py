"""`--dataset folder --data_dir DIR`: one sub-folder per class, the layout users already have.

Only the layout is parsed here; decoding, the pixel cache, skip reports and the split come from
records.assemble like every other file source.
"""
from __future__ import annotations

from core.data import register_dataset
from core.data.base import DataError, DatasetBundle
from core.data.decode import ALL_SUFFIXES
from core.data.records import Record, SourceIndex, assemble, register_index, require_data_dir


@register_index("folder")
def build_index(config) -> SourceIndex:
    root = require_data_dir(config, "folder", "one sub-folder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: expected at least 2 class sub-folders, found {classes or 'none'}")
    records = [
        Record(path=f, id=str(f.relative_to(root)), target=c)
        for c, name in enumerate(classes)
        for f in sorted((root / name).rglob("*"))
        if f.is_file() and f.suffix.lower() in ALL_SUFFIXES and not f.name.startswith(".")
    ]
    if not records:
        raise DataError(f"{root}: no images ({', '.join(sorted(ALL_SUFFIXES))}) in the class folders {classes}")
    return SourceIndex(name="folder", classes=classes, multi_label=False, records=records,
                       label_file=root, root=root)


@register_dataset("folder")
def build(config, progress) -> DatasetBundle:
    return assemble(build_index(config), config, progress)
