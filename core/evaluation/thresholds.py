"""Per-class decision thresholds chosen on the validation split, stored in the run folder.

A threshold t means "positive when probability >= t". Youden's J maximises sensitivity +
specificity - 1; best F1 maximises F1; a target sensitivity keeps the highest threshold that
still reaches it (the most specific operating point that misses at most 1 - target of positives).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .metrics import binary_operating_points, one_hot

THRESHOLDS_FILE = "thresholds.json"
METHODS = ("youden", "f1", "sensitivity")


class ThresholdError(ValueError):
    pass


def choose_threshold(scores: np.ndarray, labels: np.ndarray, method: str = "youden",
                     target_sensitivity: float = 0.95) -> Optional[float]:
    """One class's threshold; None when the split has no positives or no negatives (undefined)."""
    points = binary_operating_points(scores, labels)
    if points is None:
        return None
    thr, tp, fp, n_pos, n_neg = points
    sens, spec = tp / n_pos, 1.0 - fp / n_neg
    if method == "youden":
        best = int(np.argmax(sens + spec - 1.0))
    elif method == "f1":
        best = int(np.argmax(2 * tp / (2 * tp + fp + (n_pos - tp))))
    elif method == "sensitivity":
        best = int(np.flatnonzero(sens >= target_sensitivity - 1e-12)[0])  # thresholds descend: first = highest
    else:
        raise ThresholdError(f"threshold method: '{method}' is not one of {', '.join(METHODS)}")
    return float(thr[best])


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, classes: list[str], multi_label: bool,
                      method: str = "youden", target_sensitivity: float = 0.95) -> dict[str, Optional[float]]:
    """Per class, one-vs-rest on the class probability."""
    if method not in METHODS:
        raise ThresholdError(f"threshold method: '{method}' is not one of {', '.join(METHODS)}")
    if not 0.0 < target_sensitivity <= 1.0:
        raise ThresholdError(f"sensitivity: must be in (0, 1] (got {target_sensitivity})")
    labels = one_hot(targets, len(classes), multi_label)
    return {name: choose_threshold(probs[:, c], labels[:, c], method, target_sensitivity)
            for c, name in enumerate(classes)}


def save_thresholds(run_dir: Path, thresholds: dict[str, Optional[float]], method: str,
                    target_sensitivity: Optional[float], checkpoint: str) -> Path:
    from ..runs import write_json_atomic

    path = Path(run_dir) / THRESHOLDS_FILE
    write_json_atomic(path, {"method": method, "target_sensitivity": target_sensitivity if method == "sensitivity"
                             else None, "chosen_on": "val", "checkpoint": checkpoint, "thresholds": thresholds})
    return path


def load_thresholds(run_dir: Path) -> Optional[dict]:
    """thresholds.json's content, or None when the run has none yet."""
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ThresholdError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("thresholds"), dict):
        raise ThresholdError(f"{path}: must hold an object with a 'thresholds' object (class -> number or null)")
    return data


def as_list(thresholds: Optional[dict], classes: list[str]) -> Optional[list[Optional[float]]]:
    """Class-ordered list for metrics.decisions; classes without a stored value fall back (None)."""
    if thresholds is None:
        return None
    values = thresholds.get("thresholds", thresholds)
    return [None if values.get(c) is None else float(values[c]) for c in classes]
