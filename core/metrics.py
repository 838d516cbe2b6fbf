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


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: list[str],
                           multi_label: bool) -> dict:
    """Metrics on a whole split; classes without positives/negatives get NaN AUROC and are left out of the macro."""
    logits = logits.float()
    n_classes = len(classes)
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if multi_label:
            t = targets.long()
            per_class = multilabel_auroc(torch.sigmoid(logits), t, num_labels=n_classes, average="none")
            valid = [(t[:, c].min() != t[:, c].max()).item() for c in range(n_classes)]
        elif n_classes == 2:
            t = targets.long()
            probs = torch.softmax(logits, dim=-1)[:, 1]
            auc = binary_auroc(probs, t) if t.min() != t.max() else torch.tensor(float("nan"))
            per_class = torch.stack([auc, auc])
            valid = [bool(t.min() != t.max())] * 2
            out["val_acc"] = float(multiclass_accuracy(logits.argmax(-1), t, num_classes=2, average="micro"))
        else:
            t = targets.long()
            per_class = multiclass_auroc(torch.softmax(logits, dim=-1), t, num_classes=n_classes, average="none")
            present = torch.bincount(t, minlength=n_classes)
            valid = [(0 < present[c] < len(t)).item() for c in range(n_classes)]
            out["val_acc"] = float(multiclass_accuracy(logits.argmax(-1), t, num_classes=n_classes, average="micro"))
    per = {name: (_finite_or_nan(per_class[i]) if valid[i] else float("nan")) for i, name in enumerate(classes)}
    good = [v for v in per.values() if math.isfinite(v)]
    out["val_auroc"] = sum(good) / len(good) if good else float("nan")
    out["val_auroc_per_class"] = per
    return out


def batch_correct(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor | None:
    """Correct predictions in a batch, as a device tensor (hard single-label targets only).

    Stays on the device so the training loop can sum it over micro-batches and read it once per step.
    """
    if multi_label or targets.ndim != 1:
        return None
    return (logits.argmax(-1) == targets).sum()
