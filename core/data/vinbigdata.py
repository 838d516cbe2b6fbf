"""`--dataset vinbigdata`: the Kaggle VinBigData (VinDr-CXR) `train.csv`, images as DICOM or PNG.

train.csv has one row per (image, radiologist, box): `image_id, class_name, class_id, rad_id,
x_min, y_min, x_max, y_max`; class 14 is `No finding`. Three radiologists read each image, so
labels are aggregated per image by consensus (--vin_consensus):
  any       abnormal if at least one radiologist marked a finding;
  majority  abnormal if more than half of the image's radiologists marked a finding.
Default task: binary ["Normal", "Abnormal"]. With --multi_label: the 14 findings, each positive
under the same consensus rule. Images are looked up as <id>.png/.jpg (pre-converted) before
<id>.dicom/.dcm (originals, needing the `dicom` extra) in train/, images/ or the folder itself.
Kaggle's test set has no labels, so there is no test split; validation is split by image.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Optional

from core.data import register_dataset
from core.data.base import DataError, DatasetBundle
from core.data.records import Record, SourceIndex, assemble, register_index, require_data_dir, resolve_in, scan_files

FINDINGS = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD",
            "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
            "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis"]
NO_FINDING_ID = 14
BINARY_CLASSES = ["Normal", "Abnormal"]
COLUMNS = ("image_id", "class_id", "rad_id")
SUFFIX_PREFERENCE = (".png", ".jpg", ".jpeg", ".dicom", ".dcm")


def read_annotations(path: Path) -> dict[str, dict]:
    """image_id -> {'rads': set, 'marks': {class_id: set(rad)}, 'line': first line}."""
    images: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path} line 1: missing column '{missing[0]}' (VinBigData train.csv has "
                            "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max)")
        col = {c: header.index(c) for c in COLUMNS}
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(col.values()):
                raise DataError(f"{path} line {line}: {len(row)} fields, expected {len(header)}")
            raw = row[col["class_id"]].strip()
            try:
                class_id = int(float(raw))
            except ValueError:
                class_id = -1
            if not 0 <= class_id <= NO_FINDING_ID or (raw and float(raw) != class_id):
                raise DataError(f"{path} line {line}: class_id '{raw}' is not a VinBigData class "
                                f"(allowed 0-13 findings, {NO_FINDING_ID} = No finding)")
            image_id = row[col["image_id"]].strip()
            entry = images.setdefault(image_id, {"rads": set(), "marks": defaultdict(set), "line": line})
            rad = row[col["rad_id"]].strip() or f"line{line}"
            entry["rads"].add(rad)
            if class_id != NO_FINDING_ID:
                entry["marks"][class_id].add(rad)
    return images


def consensus(entry: dict, rule: str, class_id: Optional[int] = None) -> bool:
    """Whether the image (or one finding) is positive under 'any' or 'majority'."""
    if class_id is None:
        voters = set().union(*entry["marks"].values()) if entry["marks"] else set()
    else:
        voters = entry["marks"].get(class_id, set())
    if rule == "any":
        return len(voters) > 0
    return len(voters) * 2 > len(entry["rads"])


def find_label_file(root: Path, label_file: Optional[str]) -> Path:
    path = resolve_in(label_file, str(root)) if label_file else root / "train.csv"
    if not path.is_file():
        raise DataError(f"{'label_file' if label_file else root}: VinBigData train.csv not found ({path}); "
                        "pass --label_file")
    return path


def find_images(root: Path) -> dict[str, Path]:
    """image_id -> file, preferring pre-converted PNG/JPEG over DICOM when both exist."""
    files = scan_files([root / "train", root / "images", root], set(SUFFIX_PREFERENCE))
    by_id: dict[str, Path] = {}
    rank = {s: k for k, s in enumerate(SUFFIX_PREFERENCE)}
    for name, path in files.items():
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        if stem not in by_id or rank[suffix] < rank[by_id[stem].suffix.lower()]:
            by_id[stem] = path
    return by_id


@register_index("vinbigdata")
def build_index(config) -> SourceIndex:
    root = require_data_dir(config, "vinbigdata", "the Kaggle folder with train.csv and train/")
    label_path = find_label_file(root, config.label_file)
    annotations = read_annotations(label_path)
    images = find_images(root)
    multi = bool(config.multi_label)
    rule = config.vin_consensus
    records = []
    for image_id, entry in annotations.items():
        if multi:
            target = [1.0 if consensus(entry, rule, c) else 0.0 for c in range(len(FINDINGS))]
        else:
            target = int(consensus(entry, rule))
        records.append(Record(path=images.get(image_id), id=image_id, target=target, domain="vinbigdata",
                              patient=None, split="trainval", where=f"{label_path}:{entry['line']}"))
    task = "14 findings" if multi else "binary Normal/Abnormal"
    notes = [f"vinbigdata: {task}, consensus '{rule}' over {len(annotations)} images; no labelled test "
             "split (Kaggle test has no labels)"]
    return SourceIndex(name="vinbigdata", classes=list(FINDINGS) if multi else list(BINARY_CLASSES),
                       multi_label=multi, records=records, label_file=label_path, root=root, notes=notes)


@register_dataset("vinbigdata")
def build(config, progress) -> DatasetBundle:
    return assemble(build_index(config), config, progress)
