"""Input-space mixup (Zhang et al. 2018) for single- and multi-label targets.

Single-label targets become probability vectors; multi-hot targets mix linearly with the same
lambda, which timm's Mixup does not support. Optionally the partner comes from another domain
("input-space cross-domain mix").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import BatchStrategy, register_strategy


def to_soft_targets(targets: torch.Tensor, num_classes: int, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return targets.float()
    return F.one_hot(targets.long(), num_classes).float()


def cross_domain_partners(domains: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each sample a random partner index from another domain, itself-shuffled when none exists."""
    n = domains.shape[0]
    perm = torch.randperm(n, generator=generator, device="cpu").to(domains.device)
    partners = perm.clone()
    scores = torch.rand(n, n, generator=generator, device="cpu").to(domains.device)
    other = domains[None, :] != domains[:, None]
    scores = torch.where(other, scores, torch.full_like(scores, -1.0))
    best = scores.argmax(dim=1)
    has_other = other.any(dim=1)
    partners[has_other] = best[has_other]
    return partners


def mix_batch(images: torch.Tensor, soft_targets: torch.Tensor, lam: float, partners: torch.Tensor):
    """Blend each sample with its partner: x = lam*x + (1-lam)*x[p], same for targets."""
    mixed_x = images.mul(lam).add_(images[partners], alpha=1 - lam)
    mixed_y = soft_targets * lam + soft_targets[partners] * (1 - lam)
    return mixed_x, mixed_y


class Mixup(BatchStrategy):
    name = "mixup"

    def __init__(self, num_classes: int, multi_label: bool, alpha: float, prob: float, cross_domain: bool):
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.alpha = alpha
        self.prob = prob
        self.cross_domain = cross_domain

    def draw_lambda(self) -> float:
        if self.alpha <= 0:
            return 1.0
        return float(torch.distributions.Beta(self.alpha, self.alpha).sample())

    def training_loss(self, model, criterion, images, targets, domains, step):
        if torch.rand(()) >= self.prob:
            logits = model(images)
            return criterion(logits, targets), logits
        lam = self.draw_lambda()
        soft = to_soft_targets(targets, self.num_classes, self.multi_label)
        if self.cross_domain:
            partners = cross_domain_partners(domains)
        else:
            partners = torch.randperm(images.shape[0]).to(images.device)
        mixed_x, mixed_y = mix_batch(images, soft, lam, partners)
        logits = model(mixed_x)
        return criterion(logits, mixed_y), logits


@register_strategy("mixup")
def _mixup(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    alpha = config.mixup_alpha if config.mixup_alpha > 0 else 0.2
    return Mixup(num_classes, multi_label, alpha, config.mixup_prob, config.mixup_cross_domain)
