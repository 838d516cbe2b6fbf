"""Loss registry. Every loss takes (logits, targets) where targets may be soft (mixed)."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    def wrap(fn):
        _LOSSES[name] = fn
        return fn

    return wrap


def loss_names() -> list[str]:
    return sorted(_LOSSES)


class SoftTargetCrossEntropy(nn.Module):
    """CE that accepts class indices or probability vectors, with label smoothing and class weights."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            target = F.one_hot(target.long(), self.num_classes).to(logits.dtype)
        target = target.to(torch.float32)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        logp = F.log_softmax(logits.float(), dim=-1)
        per_class = -target * logp
        if self.weight is not None:
            per_class = per_class * self.weight
        return per_class.sum(dim=-1).mean()


class BCEWithPosWeight(nn.Module):
    """Multi-label BCE; pos_weight = n_neg / n_pos per class (clamped); smoothing y*(1-e)+e/2."""

    def __init__(self, pos_weight: Optional[torch.Tensor] = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(torch.float32)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=self.pos_weight)


def pos_weight_from_counts(pos_counts: np.ndarray, n_total: int, clamp: tuple[float, float] = (1.0, 100.0)) -> torch.Tensor:
    pos = np.maximum(np.asarray(pos_counts, dtype=np.float64), 1.0)
    neg = np.maximum(n_total - pos, 0.0)
    return torch.tensor(np.clip(neg / pos, *clamp), dtype=torch.float32)


@register_loss("ce")
def _ce(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    return SoftTargetCrossEntropy(num_classes, config.label_smoothing)


@register_loss("bce")
def _bce(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    return BCEWithPosWeight(pos_weight_from_counts(class_counts, n_train), config.label_smoothing)


def build_loss(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    """config.loss is already resolved (never 'auto' here)."""
    if config.loss not in _LOSSES:
        raise ValueError(f"loss: unknown loss '{config.loss}'. Allowed: {', '.join(loss_names())}")
    return _LOSSES[config.loss](config, num_classes, class_counts, n_train)
