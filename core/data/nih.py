"""`--dataset nih`: NIH ChestX-ray14 exactly as downloaded from the NIH Clinical Center.

Label file `Data_Entry_2017_v2020.csv` (or the older `Data_Entry_2017.csv`): its header has two
unquoted bracketed cells with commas (`OriginalImage[Width,Height]`), so the header splits into
11 cells like the data rows; columns are looked up by name among the first cells, which are
unaffected. Official split: `train_val_list.txt` / `test_list.txt` (patient-disjoint);
validation comes out of train_val by patient. Images live in `images/` or, as in the
official archives, `images_001/images/` ... `images_012/images/`. Domain = View Position.
With --no-multi_label the task becomes binary No Finding (Normal) vs any finding (Abnormal).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from core.data import register_dataset
from core.data.base import DataError, DatasetBundle, data_seed
from core.data.records import Record, SourceIndex, assemble, register_index, require_data_dir, resolve_in, scan_files
from core.data.splits import split_by_patient

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
NO_FINDING = "No Finding"
LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
REQUIRED = {"image": "Image Index", "labels": "Finding Labels", "patient": "Patient ID", "view": "View Position"}
FALLBACK_TEST_FRACTION = 0.2


def find_label_file(root: Path, label_file: Optional[str]) -> Path:
    if label_file:
        path = resolve_in(label_file, str(root))
        if not path.is_file():
            raise DataError(f"label_file: not found: {path}")
        return path
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: no NIH label file ({' or '.join(LABEL_FILES)}); pass --label_file")


def read_entries(path: Path) -> list[dict]:
    """Rows of the Data_Entry csv as dicts: image, findings (list), patient, view, line."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected the NIH Data_Entry header)")
        cells = [h.strip() for h in header]
        cols = {}
        for key, name in REQUIRED.items():
            if name not in cells:
                raise DataError(f"{path} line 1: missing column '{name}' (NIH header starts "
                                "'Image Index,Finding Labels,Follow-up #,Patient ID,...')")
            cols[key] = cells.index(name)
        need = max(cols.values()) + 1
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < need:
                raise DataError(f"{path} line {line}: {len(row)} fields, expected at least {need}")
            labels = [t.strip() for t in row[cols["labels"]].split("|") if t.strip()]
            unknown = [t for t in labels if t != NO_FINDING and t not in FINDINGS]
            if unknown:
                raise DataError(f"{path} line {line}: unknown finding '{unknown[0]}'. Allowed: "
                                f"{', '.join(FINDINGS)}, {NO_FINDING}")
            rows.append({"image": row[cols["image"]].strip(), "findings": [t for t in labels if t != NO_FINDING],
                         "patient": row[cols["patient"]].strip(), "view": row[cols["view"]].strip() or "unknown",
                         "line": line})
    return rows


def read_list(path: Path) -> list[str]:
    """One image name per line (the official files have no trailing newline)."""
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def image_folders(root: Path) -> list[Path]:
    """images/ first, then the official archives' images_00N/images/ (and flat images_00N/)."""
    folders = [root / "images"]
    for sub in sorted(root.glob("images_*")):
        if sub.is_dir():
            folders += [sub / "images", sub]
    return folders + [root]


@register_index("nih")
def build_index(config) -> SourceIndex:
    root = require_data_dir(config, "nih", "the NIH download with Data_Entry_2017_v2020.csv and images/")
    label_path = find_label_file(root, config.label_file)
    entries = read_entries(label_path)
    multi = config.multi_label is not False
    files = scan_files(image_folders(root), {".png"})
    notes: list[str] = []
    split_of = official_split(label_path, root, entries, notes)
    if split_of is None:
        split_of = fallback_split(entries, data_seed(config))
        notes.append(f"{label_path.parent}: train_val_list.txt / test_list.txt not found; "
                     f"test = {round(FALLBACK_TEST_FRACTION * 100)}% of patients (seeded)")
    records = []
    for e in entries:
        split = split_of.get(e["image"])
        if split is None:
            continue
        target = [1.0 if f in e["findings"] else 0.0 for f in FINDINGS] if multi else int(bool(e["findings"]))
        records.append(Record(path=files.get(e["image"]), id=e["image"], target=target, domain=e["view"],
                              patient=e["patient"], split=split, where=f"{label_path}:{e['line']}"))
    if not multi:
        notes.append("nih single-label: binary 'No Finding' (Normal) vs any finding (Abnormal)")
    return SourceIndex(name="nih", classes=list(FINDINGS) if multi else ["Normal", "Abnormal"],
                       multi_label=multi, records=records, label_file=label_path, root=root, notes=notes)


def official_split(label_path: Path, root: Path, entries: list[dict], notes: list[str]) -> Optional[dict[str, str]]:
    """image name -> 'trainval' / 'test' from the official lists (next to the csv or in data_dir)."""
    found = {}
    for name in ("train_val_list.txt", "test_list.txt"):
        found[name] = next((d / name for d in (label_path.parent, root) if (d / name).is_file()), None)
        if found[name] is None:
            return None
    split = {image: "trainval" for image in read_list(found["train_val_list.txt"])}
    both = 0
    for image in read_list(found["test_list.txt"]):
        both += split.get(image) == "trainval"
        split[image] = "test"
    names = {e["image"] for e in entries}
    unlisted, absent = len(names - set(split)), len(set(split) - names)
    if both:
        notes.append(f"{found['test_list.txt']}: {both} image(s) also in train_val_list.txt; kept in test")
    if unlisted:
        notes.append(f"{label_path}: {unlisted} row(s) in neither split list; left out")
    if absent:
        notes.append(f"split lists name {absent} image(s) missing from {label_path.name}; ignored")
    return split


def fallback_split(entries: list[dict], seed: int) -> dict[str, str]:
    keep, held = split_by_patient([e["patient"] for e in entries], FALLBACK_TEST_FRACTION, seed)
    split = {entries[k]["image"]: "trainval" for k in keep}
    split.update({entries[k]["image"]: "test" for k in held})
    return split


@register_dataset("nih")
def build(config, progress) -> DatasetBundle:
    return assemble(build_index(config), config, progress)
