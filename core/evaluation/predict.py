"""`medcls predict`: a run's model on new images (files, folders, a csv of paths), batched.

Unreadable files are listed in the output with the reason and never stop the batch. Decisions
use the run's thresholds.json (chosen on validation) when it exists.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from core.data.decode import ALL_SUFFIXES, DecodeError, load_resized
from core.evaluation import outputs
from core.evaluation import thresholds as thr
from core.evaluation.decision import label_names, rule_for
from core.evaluation.outputs import shown
from core.evaluation.run_model import RunModel, RunModelError, checkpoint_path, predict_images
from core.evaluation.tta import tta_plan

PATH_COLUMNS = ("path", "image", "file", "filename", "image_path")
FORMATS = ("csv", "json")


@dataclass
class Prediction:
    path: str
    probabilities: Optional[dict[str, float]] = None
    labels: list[str] = field(default_factory=list)
    error: Optional[str] = None


def collect_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Image files as given, image files under folders (sorted, recursive), paths listed in csv files."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in ALL_SUFFIXES)
        elif p.suffix.lower() == ".csv" and p.is_file():
            found += paths_from_csv(p)
        else:
            found.append(p)  # a missing or unreadable file is reported per file, not fatal
    return found


def paths_from_csv(path: Path) -> list[Path]:
    """The column named path/image/file/filename (else the first); relative paths are relative to the csv.

    A csv that is not UTF-8 text, holds a NUL byte or a field over the csv module's limit is one
    RunModelError line naming the file and line, before the model loads."""
    raw = path.read_bytes()
    if b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise RunModelError(f"{shown(path)} line {line}: holds a NUL byte; a csv of image paths must be UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise RunModelError(f"{shown(path)} line {line}: not UTF-8 (byte 0x{raw[err.start]:02x}); save the csv "
                            "as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise RunModelError(f"{shown(path)} line {reader.line_num}: unreadable csv ({err})") from None
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    body = rows[1:] if column is not None else rows
    column = column or 0
    out = []
    for row in body:
        if len(row) > column and row[column].strip():
            p = Path(row[column].strip())
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def decide(probs: np.ndarray, rm: RunModel, stored: Optional[dict]) -> list[list[str]]:
    """Labels per image under the run's one decision rule (core.evaluation.decision), as eval scores it."""
    return label_names(probs, rm.classes, rm.multi_label, thr.as_list(stored, rm.classes))


def run_thresholds(rm: RunModel) -> Optional[dict]:
    """The thresholds chosen on these very weights (ThresholdError when they belong to another checkpoint)."""
    digest = thr.checkpoint_digest(checkpoint_path(rm.run_dir, rm.checkpoint))
    return thr.thresholds_for(rm.run_dir, rm.checkpoint, digest, rule_for(len(rm.classes), rm.multi_label))


def predict_paths(rm: RunModel, files: Sequence[Path], batch_size: int = 32, tta: bool = False,
                  progress: Optional[Callable[[int, int, str], None]] = None) -> list[Prediction]:
    """With tta, the views of tta.tta_plan (training's own augmentation, or none)."""
    stored = run_thresholds(rm)
    views = tta_plan(rm.config.augmentation)[1] if tta else []
    results: list[Prediction] = []
    for start in range(0, len(files), batch_size):
        chunk = [Prediction(path=str(f)) for f in files[start:start + batch_size]]
        images, readable = [], []
        for pred in chunk:
            try:
                images.append(load_resized(pred.path, rm.img_size))
                readable.append(pred)
            except DecodeError as err:
                pred.error = err.reason
        if images:
            batch = torch.from_numpy(np.stack(images))[:, None]
            probs = predict_images(rm.model, rm.normalize, batch, rm.multi_label, views, rm.amp_dtype).numpy()
            for pred, row, labels in zip(readable, probs, decide(probs, rm, stored)):
                pred.probabilities = {c: float(v) for c, v in zip(rm.classes, row)}
                pred.labels = labels
        results += chunk  # input order, unreadable files in their place
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files), "predicting")
    return results


def write_predictions(results: list[Prediction], classes: list[str], out: Path, fmt: Optional[str] = None) -> Path:
    """csv or json, written to a temp file and renamed: a failure (full disk) leaves no partial file."""
    fmt = fmt or ("json" if out.suffix.lower() == ".json" else "csv")
    if fmt not in FORMATS:
        raise RunModelError(f"format: '{fmt}' is not one of {', '.join(FORMATS)}")
    outputs.check_folder(out.parent, "--out")
    with outputs.atomic_path(out, "--out") as tmp:
        if fmt == "json":
            rows = [{**vars(r), "path": shown(r.path), "error": r.error and shown(r.error)} for r in results]
            tmp.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["path", *[f"p_{c}" for c in classes], "labels", "error"])
                for r in results:
                    probs = [f"{r.probabilities[c]:.6f}" for c in classes] if r.probabilities else [""] * len(classes)
                    w.writerow([shown(r.path), *probs, "|".join(r.labels), shown(r.error or "")])
    return out
