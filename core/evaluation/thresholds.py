"""Per-class decision thresholds chosen on the validation split, stored in the run folder.

A threshold t means "positive when probability >= t". Youden's J maximises sensitivity +
specificity - 1; best F1 maximises F1; a target sensitivity keeps the highest threshold that
still reaches it (the most specific operating point that misses at most 1 - target of positives).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from core.evaluation.decision import rule_for
from core.evaluation.metrics import binary_operating_points, one_hot

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
    """Per class, one-vs-rest on the class probability, for the classes the decision rule thresholds:
    every class (multi-label), the second class (binary), none (argmax: all null)."""
    if method not in METHODS:
        raise ThresholdError(f"threshold method: '{method}' is not one of {', '.join(METHODS)}")
    if not 0.0 < target_sensitivity <= 1.0:
        raise ThresholdError(f"sensitivity: must be in (0, 1] (got {target_sensitivity})")
    labels = one_hot(targets, len(classes), multi_label)
    rule = rule_for(len(classes), multi_label)
    used = range(len(classes)) if rule == "threshold_per_class" else ([1] if rule == "binary_threshold" else [])
    return {name: choose_threshold(probs[:, c], labels[:, c], method, target_sensitivity) if c in used else None
            for c, name in enumerate(classes)}


def checkpoint_digest(path: Path) -> str:
    """sha256 of a checkpoint file: thresholds are bound to these exact weights (a retrain rewrites best.pt)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_value(path: Path, name: str, value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ThresholdError(f"{path}: threshold of class '{name}' must be a number in [0, 1] or null (got {shown})")
    return float(value)


def _check_entry(path: Path, checkpoint: str, entry) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("thresholds"), dict):
        raise ThresholdError(f"{path}: '{checkpoint}' must hold an object with a 'thresholds' object "
                             "(class -> number in [0, 1] or null)")
    values = {str(k): _check_value(path, str(k), v) for k, v in entry["thresholds"].items()}
    digest = entry.get("digest")
    if digest is not None and not isinstance(digest, str):
        raise ThresholdError(f"{path}: '{checkpoint}'.digest must be a string")
    method = entry.get("method")
    return {**entry, "method": method if isinstance(method, str) else None, "checkpoint": checkpoint,
            "digest": digest, "thresholds": values}


def read_thresholds_file(run_dir: Path) -> dict[str, dict]:
    """{checkpoint: entry} from thresholds.json ({} when absent); the old one-checkpoint layout is read as
    an entry for the checkpoint it names. Anything else (bad JSON, NaN, strings, a folder) is one line."""
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.exists():
        return {}
    if not path.is_file():
        raise ThresholdError(f"{path}: expected a JSON file, found a folder or a special file")
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text, parse_constant=lambda c: float(c))
    except UnicodeDecodeError:
        raise ThresholdError(f"{path}: not UTF-8 text (expected JSON)") from None
    except json.JSONDecodeError as err:
        raise ThresholdError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except (OSError, RecursionError) as err:
        raise ThresholdError(f"{path}: cannot be read ({type(err).__name__})") from None
    if isinstance(data, dict) and isinstance(data.get("checkpoints"), dict):
        return {str(k): _check_entry(path, str(k), v) for k, v in data["checkpoints"].items()}
    if isinstance(data, dict) and "thresholds" in data:  # medcls <= 0.x: one entry, for the checkpoint it names
        name = data.get("checkpoint") if isinstance(data.get("checkpoint"), str) else "best"
        return {name: _check_entry(path, name, data)}
    raise ThresholdError(f"{path}: must hold an object with a 'checkpoints' object (checkpoint -> thresholds)")


def save_thresholds(run_dir: Path, thresholds: dict[str, Optional[float]], method: str,
                    target_sensitivity: Optional[float], checkpoint: str, digest: Optional[str] = None,
                    rule: Optional[str] = None) -> Path:
    """Store one checkpoint's entry beside the others'; a corrupt file is replaced (this is its repair)."""
    from core.runs.folder import write_json_atomic

    path = Path(run_dir) / THRESHOLDS_FILE
    if path.exists() and not path.is_file():
        raise ThresholdError(f"{path}: expected a JSON file, found a folder or a special file; remove it")
    try:
        entries = read_thresholds_file(run_dir)
    except ThresholdError:
        entries = {}
    entries[checkpoint] = {"method": method, "rule": rule,
                           "target_sensitivity": target_sensitivity if method == "sensitivity" else None,
                           "chosen_on": "val", "checkpoint": checkpoint, "digest": digest, "thresholds": thresholds}
    try:
        write_json_atomic(path, {"format": 2, "checkpoints": entries})
    except OSError as err:
        raise ThresholdError(f"{path}: cannot be written ({err.strerror or type(err).__name__})") from None
    return path


def load_thresholds(run_dir: Path, checkpoint: str = "best") -> Optional[dict]:
    """The entry chosen on `checkpoint`, or None when there is none yet."""
    return read_thresholds_file(run_dir).get(checkpoint)


def thresholds_for(run_dir: Path, checkpoint: str, digest: Optional[str], rule: str) -> Optional[dict]:
    """The thresholds predict/export may apply to these weights, or a ThresholdError saying whose they are.

    None when the run has no thresholds at all (the rule's 0.5 defaults apply) or when the rule uses none."""
    from core.evaluation.decision import uses_thresholds

    entries = read_thresholds_file(run_dir)
    if not uses_thresholds(rule):
        return entries.get(checkpoint)
    path = Path(run_dir) / THRESHOLDS_FILE
    fix = f"choose them with `medcls eval {Path(run_dir).name} --checkpoint {checkpoint} --thresholds youden`"
    entry = entries.get(checkpoint)
    if entry is None:
        if entries:
            raise ThresholdError(f"{path}: holds thresholds chosen on {', '.join(sorted(entries))}.pt, not on "
                                 f"{checkpoint}.pt; {fix}")
        return None
    if entry.get("digest") and digest and entry["digest"] != digest:
        raise ThresholdError(f"{path}: the thresholds for {checkpoint}.pt were chosen on other weights (digest "
                             f"{entry['digest'][:12]}, the file now is {digest[:12]}: retrained?); {fix}")
    return entry


def as_list(thresholds: Optional[dict], classes: list[str]) -> Optional[list[Optional[float]]]:
    """Class-ordered list for metrics.decisions; classes without a stored value fall back (None)."""
    if thresholds is None:
        return None
    values = thresholds.get("thresholds", thresholds)
    return [None if values.get(c) is None else float(values[c]) for c in classes]
