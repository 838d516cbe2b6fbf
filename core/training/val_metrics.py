"""Validation metrics: loss, AUROC (macro + per class), accuracy (single-label).

AUROC comes from core/evaluation/metrics.py, the implementation test scoring and `medcls eval` use,
on the same probabilities (sigmoid / softmax of float32 logits): a run's val AUROC and the number
`medcls eval --split val` prints for the same weights are one computation.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.evaluation.metrics import auroc, one_hot


def _finite_or_nan(x: torch.Tensor) -> float:
    v = float(x)
    return v if math.isfinite(v) else float("nan")


def unscorable_classes(classes: list[str], positives, n_images: int, multi_label: bool) -> dict[str, str]:
    """Classes whose AUROC is undefined on a split, with why: AUROC needs positives and negatives.

    `positives`: images per class (positives per finding for multi-label). A binary task has one
    AUROC for both classes, so a missing class leaves neither scorable.
    """
    counts = [int(round(float(c))) for c in positives]
    reasons: dict[str, str] = {}
    for name, pos in zip(classes, counts):
        if pos == 0:
            reasons[name] = "no positive image in val" if multi_label else "no image of this class in val"
        elif pos >= n_images:
            reasons[name] = "no negative image in val" if multi_label else "every val image is of this class"
    if not multi_label and len(classes) == 2 and reasons:
        present = [name for name, pos in zip(classes, counts) if pos > 0]
        only = f"val has only '{present[0]}' images" if present else "val is empty"
        reasons = {name: f"{only} (binary AUROC needs both classes)" for name in classes}
    return reasons


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: list[str],
                           multi_label: bool) -> dict:
    """Metrics on a whole split. A class without positives or negatives has no AUROC: it is None in
    `val_auroc_per_class`, named with the reason in `val_auroc_excluded` and left out of the macro."""
    logits = logits.float()
    n_classes = len(classes)
    out: dict = {}
    t = targets.long()
    probs = (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)).double().numpy()
    truth = t.numpy()
    labels = one_hot(truth, n_classes, multi_label)
    per_class = [auroc(probs[:, c], labels[:, c]) for c in range(n_classes)]
    per_class = [float("nan") if v is None else v for v in per_class]
    if multi_label:
        positives = labels.sum(axis=0).tolist()
    else:
        positives = np.bincount(truth, minlength=n_classes).tolist()
        out["val_acc"] = float((probs.argmax(-1) == truth).mean()) if len(truth) else float("nan")
    excluded = unscorable_classes(classes, positives, len(t), multi_label)
    per = {name: (None if name in excluded else _finite_or_nan(per_class[i])) for i, name in enumerate(classes)}
    good = [v for v in per.values() if v is not None and math.isfinite(v)]
    out["val_auroc"] = sum(good) / len(good) if good else float("nan")
    out["val_auroc_per_class"] = per
    out["val_auroc_excluded"] = excluded
    return out


def batch_correct(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor | None:
    """Correct predictions in a batch as a device tensor (no host sync), for the overfitting monitor;
    None for multi-label or soft (mixed) targets."""
    if multi_label or targets.ndim != 1:
        return None
    return (logits.argmax(-1) == targets).sum()


def batch_accuracy(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> float | None:
    """Training accuracy for the overfitting monitor (hard single-label targets only)."""
    correct = batch_correct(logits, targets, multi_label)
    return None if correct is None else float(correct) / max(1, targets.shape[0])
