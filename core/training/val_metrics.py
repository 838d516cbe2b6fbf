"""Validation metrics through torchmetrics: loss, AUROC (macro + per class), accuracy (single-label)."""
from __future__ import annotations

import math
import warnings

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_auroc,
    multilabel_auroc,
)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if multi_label:
            per_class = multilabel_auroc(torch.sigmoid(logits), t, num_labels=n_classes, average="none")
            positives = t.sum(dim=0).tolist()
        elif n_classes == 2:
            probs = torch.softmax(logits, dim=-1)[:, 1]
            auc = binary_auroc(probs, t) if t.min() != t.max() else torch.tensor(float("nan"))
            per_class = torch.stack([auc, auc])
            positives = torch.bincount(t, minlength=2).tolist()
            out["val_acc"] = float(multiclass_accuracy(logits.argmax(-1), t, num_classes=2, average="micro"))
        else:
            per_class = multiclass_auroc(torch.softmax(logits, dim=-1), t, num_classes=n_classes, average="none")
            positives = torch.bincount(t, minlength=n_classes).tolist()
            out["val_acc"] = float(multiclass_accuracy(logits.argmax(-1), t, num_classes=n_classes, average="micro"))
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
