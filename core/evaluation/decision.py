"""The one decision rule: probabilities (+ stored thresholds) -> labels.

Eval's confusion matrix and per-class sensitivities, `predict`, the app and the exported model's
JSON all call or describe this module, so the operating point a report states is the one every
tool applies:

- multi-label ("threshold_per_class"): class c is present when p_c >= t_c (0.5 where t_c is null);
- binary single-label ("binary_threshold"): classes[1] when p_1 >= t_1 (0.5 where null), else classes[0];
- single-label with 3+ classes ("argmax"): the most probable class (the first on ties). Per-class
  thresholds cannot define one label per image without a tie-break of their own, so none is applied.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

RULES = ("threshold_per_class", "binary_threshold", "argmax")
DEFAULT_THRESHOLD = 0.5


def rule_for(n_classes: int, multi_label: bool) -> str:
    if multi_label:
        return "threshold_per_class"
    return "binary_threshold" if n_classes == 2 else "argmax"


def uses_thresholds(rule: str) -> bool:
    return rule != "argmax"


def _t(thresholds: Optional[Sequence[Optional[float]]], c: int) -> float:
    if thresholds is None or thresholds[c] is None:
        return DEFAULT_THRESHOLD
    return float(thresholds[c])


def predicted_index(probs: np.ndarray, thresholds: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """Single-label: (N,) class index under the rule for probs' class count."""
    probs = np.asarray(probs)
    if probs.shape[1] == 2:
        return (probs[:, 1] >= _t(thresholds, 1)).astype(np.int64)
    return probs.argmax(axis=1)


def decide(probs: np.ndarray, multi_label: bool, thresholds: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """(N, C) yes/no per class: the labels every tool outputs (exactly one yes per row when single-label)."""
    probs = np.asarray(probs)
    n, c = probs.shape
    if multi_label:
        return probs >= np.array([_t(thresholds, k) for k in range(c)])[None]
    return predicted_index(probs, thresholds)[:, None] == np.arange(c)[None]


def label_names(probs: np.ndarray, classes: Sequence[str], multi_label: bool,
                thresholds: Optional[Sequence[Optional[float]]] = None) -> list[list[str]]:
    return [[name for name, yes in zip(classes, row) if yes] for row in decide(probs, multi_label, thresholds)]


def describe(classes: Sequence[str], multi_label: bool, thresholds: Optional[Sequence[Optional[float]]]) -> dict:
    """The rule as data and words for an exported model's JSON: a consumer following it gets predict's labels."""
    rule = rule_for(len(classes), multi_label)
    if rule == "threshold_per_class":
        applied = {name: _t(thresholds, k) for k, name in enumerate(classes)}
        text = "for each class c: present when probabilities[c] >= thresholds_applied[c] (zero, one or several labels)"
    elif rule == "binary_threshold":
        applied = {classes[1]: _t(thresholds, 1)}
        text = (f"'{classes[1]}' when probabilities[1] >= thresholds_applied['{classes[1]}'], "
                f"else '{classes[0]}' (probabilities[0] is not compared)")
    else:
        applied = {}
        text = "the class with the highest probability (the lowest index on ties); no threshold applies"
    return {"rule": rule, "description": text, "thresholds_applied": applied}


def apply_described(probs: np.ndarray, classes: Sequence[str], decision: dict) -> list[list[str]]:
    """Follow an exported JSON's `decision` literally (what an external consumer would do); used by tests."""
    applied = decision["thresholds_applied"]
    if decision["rule"] == "threshold_per_class":
        return [[c for k, c in enumerate(classes) if row[k] >= applied[c]] for row in probs]
    if decision["rule"] == "binary_threshold":
        return [[classes[1] if row[1] >= applied[classes[1]] else classes[0]] for row in probs]
    return [[classes[int(np.argmax(row))]] for row in probs]
