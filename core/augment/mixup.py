"""Input-space mixup (Zhang et al. 2018) for single- and multi-label targets.

Single-label targets become probability vectors; multi-hot targets mix linearly with the same
lambda, which timm's Mixup does not support. With `mixup_cross_domain` the partner comes from
another domain where the batch has one (the seed's "input-space cross-domain mix").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.augment import BatchStrategy, register_strategy
from core.augment.partners import cross_domain_partners, random_partners

DEFAULT_ALPHA = 0.2
"""Beta(alpha, alpha) when mixup_alpha is 0 but a mix method was asked for (the tips' example value)."""


def to_soft_targets(targets: torch.Tensor, num_classes: int, multi_label: bool) -> torch.Tensor:
    """Class indices -> one-hot; multi-hot / probability vectors pass through. Float32."""
    if multi_label or targets.ndim == 2:
        return targets.float()
    return F.one_hot(targets.long(), num_classes).float()


def mix_alpha(config) -> float:
    return config.mixup_alpha if config.mixup_alpha > 0 else DEFAULT_ALPHA


def batch_is_mixed(prob: float) -> bool:
    """One draw per batch (global torch RNG), as mixup_prob is defined."""
    return bool(torch.rand(()) < prob)


def draw_beta(alpha: float, n: int = 1) -> torch.Tensor:
    """n draws of Beta(alpha, alpha) on the CPU (global RNG; the same stream on CPU and CUDA runs)."""
    a = torch.tensor(float(alpha))
    return torch.distributions.Beta(a, a).sample((n,))


def mix_batch(images: torch.Tensor, soft_targets: torch.Tensor, lam: float, partners: torch.Tensor):
    """Blend each sample with its partner: x = lam*x + (1-lam)*x[p], same for targets."""
    mixed_x = images * lam + images[partners] * (1 - lam)
    mixed_y = soft_targets * lam + soft_targets[partners] * (1 - lam)
    return mixed_x, mixed_y


class Mixup(BatchStrategy):
    name = "mixup"

    def __init__(self, num_classes: int, multi_label: bool, alpha: float, prob: float, cross_domain: bool,
                 notes: list[str] | None = None, pixel_mix=None):
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.alpha = alpha
        self.prob = prob
        self.cross_domain = cross_domain
        self.notes = list(notes or [])
        self.pixel_mix = pixel_mix
        """Optional PipMix applied first (the no-domain fallback of xdomainmix+pipmix)."""

    def training_loss(self, model, criterion, images, targets, domains, step):
        if self.pixel_mix is not None:
            images, targets = self.pixel_mix.mix(images, targets, domains)
        if not batch_is_mixed(self.prob):
            logits = model(images)
            return criterion(logits, targets), logits
        lam = float(draw_beta(self.alpha)[0])
        soft = to_soft_targets(targets, self.num_classes, self.multi_label).to(images.device)
        if self.cross_domain:
            partners = cross_domain_partners(domains)
        else:
            partners = random_partners(images.shape[0], images.device)
        mixed_x, mixed_y = mix_batch(images, soft, lam, partners)
        logits = model(mixed_x)
        return criterion(logits, mixed_y), logits


@register_strategy("mixup")
def _mixup(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    return Mixup(num_classes, multi_label, mix_alpha(config), config.mixup_prob, config.mixup_cross_domain)
