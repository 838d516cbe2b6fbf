"""Loss registry. Every loss takes (logits, targets) where targets may be soft (mixed).

Targets arrive as class indices (single-label), probability vectors (single-label after a mix)
or float multi-hot / soft vectors (multi-label). Losses reduce to a per-image value and then
average over the batch, so the engine's micro-batch weighting (OOM split, accumulation) keeps
the effective learning rate unchanged.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from core.config.registry import Registry

LOSSES: Registry = Registry("loss")
register_loss = LOSSES.register
loss_names = LOSSES.names


def dense_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices -> one-hot; probability / multi-hot vectors pass through. Always float32."""
    if target.ndim == 1:
        return F.one_hot(target.long(), num_classes).float()
    return target.float()


def smooth_binary(target: torch.Tensor, eps: float) -> torch.Tensor:
    """Sigmoid-loss label smoothing y*(1-e)+e/2 (REFERENCE): each finding is its own 2-class problem."""
    return target * (1 - eps) + eps / 2 if eps else target


class SoftTargetCrossEntropy(nn.Module):
    """CE that accepts class indices or probability vectors, with label smoothing and class weights.

    With weights the per-image loss is sum_c w_c * t_c * -log p_c, averaged over the batch (not
    divided by the summed weights as torch does for index targets), so hard and mixed targets
    are on the same scale.
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = dense_targets(target, self.num_classes)
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
        target = smooth_binary(dense_targets(target, logits.shape[-1]), self.label_smoothing)
        return F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=self.pos_weight)


class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) via torchvision: down-weights easy negatives.

    Single-label targets become one-hot. Soft targets work because torchvision's formula is
    linear in t for the CE term and uses p_t = p*t + (1-p)*(1-t). Summed over classes, mean over images.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.alpha, self.gamma, self.label_smoothing = alpha, gamma, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = smooth_binary(dense_targets(target, logits.shape[-1]), self.label_smoothing)
        loss = sigmoid_focal_loss(logits.float(), target, alpha=self.alpha, gamma=self.gamma, reduction="none")
        return loss.sum(dim=-1).mean()


class AsymmetricLoss(nn.Module):
    """ASL (Ridnik et al., ICCV 2021): separate focusing for positives and negatives plus a
    probability margin (clip) that discards very easy negatives, for many-negative multi-label sets.

    loss = -[ y (1-p)^g+ log p + (1-y) p_m^g- log(1-p_m) ],  p_m = max(p - clip, 0).
    Written with y and (1-y) as weights, so soft targets mix the two terms linearly; for hard
    targets it equals the paper's formula. Summed over classes (as the paper), mean over images.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 label_smoothing: float = 0.0, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip
        self.label_smoothing, self.eps = label_smoothing, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        y = smooth_binary(dense_targets(target, x.shape[-1]), self.label_smoothing)
        p = torch.sigmoid(x)
        if self.clip > 0:
            p_neg = (p - self.clip).clamp(min=0)
            log_neg = torch.log((1 - p_neg).clamp(min=self.eps))
        else:
            p_neg, log_neg = p, F.logsigmoid(-x)
        pos = y * F.logsigmoid(x)
        neg = (1 - y) * log_neg
        if self.gamma_pos:
            pos = pos * (1 - p).pow(self.gamma_pos)
        if self.gamma_neg:
            neg = neg * p_neg.pow(self.gamma_neg)
        return -(pos + neg).sum(dim=-1).mean()


def pos_weight_from_counts(pos_counts: np.ndarray, n_total: int, clamp: tuple[float, float] = (1.0, 100.0)) -> torch.Tensor:
    pos = np.maximum(np.asarray(pos_counts, dtype=np.float64), 1.0)
    neg = np.maximum(n_total - pos, 0.0)
    return torch.tensor(np.clip(neg / pos, *clamp), dtype=torch.float32)


def class_weights_from_counts(class_counts: np.ndarray, n_total: int) -> torch.Tensor:
    """Inverse frequency n / (C * n_c): rare classes count more, and the mean weight over the
    training images is 1, so the loss keeps the scale the LR tips assume. Empty classes count as 1."""
    counts = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    return torch.tensor(n_total / (len(counts) * counts), dtype=torch.float32)


@register_loss("ce")
def _ce(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    weight = class_weights_from_counts(class_counts, n_train) if getattr(config, "class_weights", False) else None
    return SoftTargetCrossEntropy(num_classes, config.label_smoothing, weight)


@register_loss("bce")
def _bce(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    return BCEWithPosWeight(pos_weight_from_counts(class_counts, n_train), config.label_smoothing)


@register_loss("focal")
def _focal(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    return SigmoidFocalLoss(config.focal_alpha, config.focal_gamma, config.label_smoothing)


@register_loss("asl")
def _asl(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    return AsymmetricLoss(config.asl_gamma_neg, config.asl_gamma_pos, config.asl_clip, config.label_smoothing)


def build_loss(config, num_classes: int, class_counts: np.ndarray, n_train: int) -> nn.Module:
    """config.loss is already resolved (never 'auto' here)."""
    return LOSSES.get(config.loss)(config, num_classes, class_counts, n_train)
