"""`--dataset csv --data_dir DIR --csv FILE`: the user's own label table.

Columns (header names, case-insensitive):
  path     image path, relative to --data_dir (default: the csv's folder) or absolute
           (also accepted: image, file, filename, image_path)
  label    one class, or several joined by `|` for multi-label (also: labels, class, target)
  domain   optional site/scanner/source id (default: one domain)
  patient  optional patient id (patient_id): keeps a patient's images in one split
  split    optional train / val / test (also training, valid, validation, testing)
Multi-label when --multi_label is given or any label cell holds `|`; an empty multi-label cell
means no finding (all zeros). Classes are the labels of the training rows, sorted; a label in a
val/test row that never occurs in training is an error naming the file and line. Without a
split column (or without val rows), validation is split from train by patient.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from core.data import register_dataset
from core.data.base import DataError, DatasetBundle
from core.data.records import Record, SourceIndex, assemble, register_index, resolve_in

ALIASES = {
    "path": ("path", "image", "file", "filename", "image_path", "img", "file_path"),
    "label": ("label", "labels", "class", "target", "finding", "findings"),
    "domain": ("domain", "site", "source", "scanner"),
    "patient": ("patient", "patient_id", "patientid", "subject", "subject_id"),
    "split": ("split", "fold_split", "subset"),
}
SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test", "trainval": "trainval", "train_val": "trainval"}


def _columns(header: list[str], path: Path) -> dict[str, Optional[int]]:
    lowered = [h.strip().lower() for h in header]
    known = {n for names in ALIASES.values() for n in names}
    for name in known:
        if lowered.count(name) > 1:
            raise DataError(f"{path} line 1: column '{name}' appears {lowered.count(name)} times in the header; "
                            "each column name must be unique")
    cols: dict[str, Optional[int]] = {}
    for key, names in ALIASES.items():
        cols[key] = next((lowered.index(n) for n in names if n in lowered), None)
    for key in ("path", "label"):
        if cols[key] is None:
            raise DataError(f"{path} line 1: no '{key}' column (accepted names: {', '.join(ALIASES[key])}; "
                            f"found: {', '.join(header)})")
    return cols


def read_rows(path: Path, multi_label: Optional[bool]) -> tuple[list[dict], bool]:
    """Rows as dicts (path, labels, domain, patient, split, line) and whether the task is multi-label.

    Broken files (not UTF-8, a NUL byte, a field over the csv module's 131,072-character limit)
    are one DataError naming the file and line.
    """
    try:
        return _read_rows(path, multi_label)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                        "save the table as UTF-8 csv") from None
    except csv.Error as err:
        line = getattr(err, "line_num", None)
        raise DataError(f"{path}{f' line {line}' if line else ''}: unreadable csv ({err})") from None


def _read_rows(path: Path, multi_label: Optional[bool]) -> tuple[list[dict], bool]:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader, None)
        except csv.Error as err:
            err.line_num = reader.line_num  # type: ignore[attr-defined]
            raise
        if header is None:
            raise DataError(f"{path}: empty file (expected a header with path and label columns)")
        cols = _columns(header, path)
        rows = []
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                err.line_num = reader.line_num  # type: ignore[attr-defined]
                raise
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) > len(header):
                raise DataError(f"{path} line {line}: {len(row)} fields but the header has {len(header)} "
                                "(a stray delimiter or an unquoted comma?)")
            cell = lambda key: row[cols[key]].strip() if cols[key] is not None and cols[key] < len(row) else ""  # noqa: E731
            if not cell("path"):
                raise DataError(f"{path} line {line}: empty path")
            split_raw = cell("split").lower()
            split = SPLIT_VALUES.get(split_raw or "trainval")
            if split is None:
                raise DataError(f"{path} line {line}: split '{cell('split')}' not allowed "
                                "(train, val, test or empty)")
            rows.append({"path": cell("path"), "label": cell("label"), "domain": cell("domain") or "default",
                         "patient": cell("patient") or None, "split": split, "line": line})
    has_pipe = any("|" in r["label"] for r in rows)
    multi = bool(multi_label) or has_pipe
    if multi_label is False and has_pipe:
        line = next(r["line"] for r in rows if "|" in r["label"])
        raise DataError(f"{path} line {line}: '|' joins several labels but --no-multi_label was given")
    for r in rows:
        r["labels"] = [t.strip() for t in r["label"].split("|") if t.strip()] if multi else [r["label"]]
        if not multi and not r["label"]:
            raise DataError(f"{path} line {r['line']}: empty label (single-label tables need one class per row)")
    return rows, multi


def drop_duplicate_rows(rows: list[dict], path: Path) -> tuple[list[dict], int]:
    """One row per image path: exact repeats are dropped; the same path with other labels or in
    another split is an error naming both lines (it would leak between train and val)."""
    seen: dict[str, dict] = {}
    kept = []
    for r in rows:
        first = seen.get(r["path"])
        if first is None:
            seen[r["path"]] = r
            kept.append(r)
            continue
        if sorted(first["labels"]) != sorted(r["labels"]) or first["split"] != r["split"]:
            raise DataError(f"{path} line {r['line']}: '{r['path']}' already appears on line {first['line']} "
                            "with other labels or split; one image may have only one row")
    return kept, len(rows) - len(kept)


@register_index("csv")
def build_index(config) -> SourceIndex:
    csv_arg = config.csv or config.label_file
    if not csv_arg:
        raise DataError("csv: --dataset csv needs --csv FILE (columns path,label[,domain,patient,split])")
    path = resolve_in(csv_arg, config.data_dir)
    if not path.is_file():
        raise DataError(f"csv: file not found: {path}")
    root = Path(config.data_dir).expanduser() if config.data_dir else path.parent
    if not root.is_dir():
        raise DataError(f"data_dir: folder not found: {root}")
    rows, multi = read_rows(path, config.multi_label)
    rows, dropped = drop_duplicate_rows(rows, path)
    if not any(r["split"] == "val" for r in rows):
        for r in rows:
            if r["split"] == "train":
                r["split"] = "trainval"
    train_like = [r for r in rows if r["split"] in ("train", "trainval")]
    if not train_like:
        raise DataError(f"{path}: no training rows (split column has only val/test)")
    classes = sorted({t for r in train_like for t in r["labels"]})
    if not multi and len(classes) < 2:
        raise DataError(f"{path}: single-label task needs at least 2 classes in the training rows, found {classes}")
    class_id = {c: k for k, c in enumerate(classes)}
    records = []
    for r in rows:
        unknown = [t for t in r["labels"] if t not in class_id]
        if unknown:
            raise DataError(f"{path} line {r['line']}: label '{unknown[0]}' does not occur in the training rows. "
                            f"Allowed: {', '.join(classes)}")
        if multi:
            target = [0.0] * len(classes)
            for t in r["labels"]:
                target[class_id[t]] = 1.0
        else:
            target = class_id[r["labels"][0]]
        image = Path(r["path"]).expanduser()
        records.append(Record(path=image if image.is_absolute() else root / image, id=r["path"], target=target,
                              domain=r["domain"], patient=r["patient"], split=r["split"],
                              where=f"{path}:{r['line']}"))
    return SourceIndex(name="csv", classes=classes, multi_label=multi, records=records, label_file=path,
                       root=root, notes=[f"csv labels: {path} ({len(rows)} rows, "
                                         f"{'multi-label' if multi else 'single-label'}, {len(classes)} classes)"]
                       + ([f"csv: {dropped} duplicated row(s) dropped (same path, labels and split), so no "
                           "image is counted twice or lands in both train and val"] if dropped else []))


@register_dataset("csv")
def build(config, progress) -> DatasetBundle:
    return assemble(build_index(config), config, progress)
