"""`--dataset covidx`: COVIDx (COVID-Net) label files in every layout the versions used.

Lines are space-separated: `pid file label` (3 fields), `pid file label source` (4), or with a
patient id that itself holds a space (`COVID 70 COVID(70).png COVID-19 sirm`, 5 fields). The
label is found from the right (last or second-to-last field), so all layouts parse the same way.
Labels map case-insensitively to COVID / Normal / Pneumonia; rows whose label maps to nothing
or that are malformed are reported (count and first examples) and skipped, never guessed.

Binary files (`*B.txt`, v6, v7B: `positive` / `negative`) become a 2-class task
["Non-COVID", "COVID"]: `negative` means "not COVID" (COVIDx puts normal *and* pneumonia
images there), so calling it Normal would be wrong. Index 1 = COVID = the positive class.
A file mixing binary and 3-class labels is an error naming the file and line.
Domain = the source column (`rnsa`, a typo in COVIDx9A, is read as `rsna`; 3-field lines: `unknown`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.data import register_dataset
from core.data.base import DataError, DatasetBundle
from core.data.decode import ALL_SUFFIXES
from core.data.records import Record, SourceIndex, assemble, register_index, require_data_dir, resolve_in, scan_files

CLASSES = ["COVID", "Normal", "Pneumonia"]
BINARY_CLASSES = ["Non-COVID", "COVID"]
THREE_CLASS = {"covid-19": "COVID", "covid19": "COVID", "covid": "COVID", "normal": "Normal",
               "pneumonia": "Pneumonia"}
BINARY = {"positive": "COVID", "negative": "Non-COVID"}
SOURCE_ALIASES = {"rnsa": "rsna"}
EXAMPLES = 3


@dataclass
class LabelLine:
    """One parsed label line."""

    patient: str
    filename: str
    label: str
    """Canonical class name (COVID / Normal / Pneumonia / Non-COVID)."""
    raw_label: str
    source: str
    fields: int
    line: int


@dataclass
class ParsedLabels:
    rows: list[LabelLine]
    problems: list[tuple[int, str, str]]
    """(line, text, why) for unmapped or malformed lines."""
    binary: bool


def parse_label_file(path: Path) -> ParsedLabels:
    """Parse every line; unmapped/malformed lines go to `problems`, mixed label sets raise DataError."""
    rows: list[LabelLine] = []
    problems: list[tuple[int, str, str]] = []
    kinds: dict[str, int] = {}
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            problems.append((line_no, line, f"{len(fields)} field(s), need at least 3 (patient file label)"))
            continue
        pos = _label_position(fields)
        if pos is None:
            guess = fields[-2] if len(fields) >= 4 else fields[-1]
            problems.append((line_no, line, f"unmapped label '{guess}'"))
            continue
        key = fields[pos].lower()
        kind = "binary" if key in BINARY else "three"
        kinds.setdefault(kind, line_no)
        if len(kinds) > 1:
            other = next(k for k in kinds if k != kind)
            raise DataError(f"{path} line {line_no}: label '{fields[pos]}' mixes binary (positive/negative) "
                            f"and 3-class (COVID-19/normal/pneumonia) labels (first {other} label on line "
                            f"{kinds[other]}); use one kind per file")
        source = fields[pos + 1].lower() if pos + 1 < len(fields) else "unknown"
        rows.append(LabelLine(patient=" ".join(fields[:pos - 1]), filename=fields[pos - 1],
                              label=(BINARY if kind == "binary" else THREE_CLASS)[key], raw_label=fields[pos],
                              source=SOURCE_ALIASES.get(source, source), fields=len(fields), line=line_no))
    return ParsedLabels(rows=rows, problems=problems, binary="binary" in kinds)


def _label_position(fields: list[str]) -> Optional[int]:
    """Index of the label: last field (no source column) or second-to-last (source column)."""
    for pos in (len(fields) - 1, len(fields) - 2):
        if pos >= 2 and _known(fields[pos]):
            return pos
    return None


def _known(token: str) -> bool:
    t = token.lower()
    return t in THREE_CLASS or t in BINARY


def _version_key(path: Path) -> tuple:
    """Sort key: COVIDx version number, then 'A' (3-class) before 'B' (binary) at one version."""
    m = re.search(r"COVIDx(\d+)([A-Za-z]*)", path.name)
    if not m:
        return (-1, 0, path.name)
    return (int(m.group(1)), 0 if m.group(2).upper() != "B" else -1, path.name)


def find_label_files(root: Path, label_file: Optional[str]) -> tuple[Path, Optional[Path], Optional[Path]]:
    """(train, val or None, test or None). --label_file names the train file."""
    if label_file:
        train = resolve_in(label_file, str(root))
        if not train.is_file():
            raise DataError(f"label_file: not found: {train}")
    else:
        folders = [root, root / "labels"]
        plain = next((d / "train.txt" for d in folders if (d / "train.txt").is_file()), None)
        versioned = sorted((p for d in folders for p in d.glob("train_COVIDx*.txt")), key=_version_key)
        train = versioned[-1] if versioned else plain
        if train is None:
            raise DataError(f"{root}: no COVIDx label file (train_COVIDx*.txt or train.txt in the folder "
                            "or labels/); pass --label_file")
    val = _sibling(train, "val")
    test = _sibling(train, "test")
    return train, val, test


def _sibling(train: Path, split: str) -> Optional[Path]:
    if not train.name.startswith("train"):
        return None
    candidate = train.with_name(split + train.name[len("train"):])
    return candidate if candidate.is_file() else None


@register_index("covidx")
def build_index(config) -> SourceIndex:
    root = require_data_dir(config, "covidx", "the COVIDx folder with train/ test/ and its label files")
    if config.multi_label:
        raise DataError("multi_label: covidx is single-label (COVID / Normal / Pneumonia); drop --multi_label")
    train_file, val_file, test_file = find_label_files(root, config.label_file)
    files_by_split = {"trainval": train_file, "val": val_file, "test": test_file}
    parsed = {s: parse_label_file(p) for s, p in files_by_split.items() if p is not None}
    kinds = {s: p.binary for s, p in parsed.items() if p.rows}
    if len(set(kinds.values())) > 1:
        raise DataError(f"{train_file}: binary and 3-class label files mixed across splits "
                        f"({', '.join(f'{files_by_split[s].name}: ' + ('binary' if b else '3-class') for s, b in kinds.items())})")
    binary = any(kinds.values())
    classes = BINARY_CLASSES if binary else CLASSES
    class_id = {c: k for k, c in enumerate(classes)}
    notes = [f"covidx labels: {train_file.name}" + (f", {test_file.name}" if test_file else "")
             + (f", {val_file.name}" if val_file else "")
             + (" (binary: negative -> Non-COVID, positive -> COVID)" if binary else "")]
    skipped: list[tuple[str, str]] = []
    lookup = _Lookup(root)
    records: list[Record] = []
    for split, labels in parsed.items():
        path = files_by_split[split]
        if labels.problems:
            examples = "; ".join(f"line {n}: {why}" for n, _, why in labels.problems[:EXAMPLES])
            notes.append(f"{path}: {len(labels.problems)} row(s) skipped, unmapped or malformed (e.g. {examples})")
            skipped += [(f"{path}:{n}", f"{why}: {text}") for n, text, why in labels.problems]
        seen: set[str] = set()
        for row in labels.rows:
            if row.filename in seen:
                continue
            seen.add(row.filename)
            records.append(Record(path=lookup.find(row.filename, "test" if split == "test" else "train"),
                                  id=row.filename, target=class_id[row.label], domain=row.source,
                                  patient=row.patient, split=split, where=f"{path}:{row.line}"))
    return SourceIndex(name="covidx", classes=list(classes), multi_label=False, records=records,
                       label_file=train_file, root=root, skipped=skipped, notes=notes)


class _Lookup:
    """File name -> path: <root>/<split>/name, <root>/images/name, <root>/name, else anywhere below root."""

    def __init__(self, root: Path):
        self.root = root
        self._everywhere: Optional[dict[str, Path]] = None

    def find(self, name: str, split: str) -> Optional[Path]:
        for folder in (self.root / split, self.root / "images", self.root):
            candidate = folder / name
            if candidate.is_file():
                return candidate
        if self._everywhere is None:
            self._everywhere = scan_files([self.root], ALL_SUFFIXES, recursive=True)
        return self._everywhere.get(name)


@register_dataset("covidx")
def build(config, progress) -> DatasetBundle:
    return assemble(build_index(config), config, progress)
