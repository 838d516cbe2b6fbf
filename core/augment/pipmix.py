"""PipMix: patch-level cross-domain mixing (this project's definition, docs/REFERENCE.md).

The image is cut into P x P patches (N in all); n ~ U{1, N/2} of them, chosen at random, are
replaced by lambda-blends with the same patches of a partner from another domain,
lambda ~ Beta(alpha, alpha) per image. Local scanner texture (noise, blur, contrast) then varies
inside one image while most of the anatomy stays the anchor's, so the partner's target weight
is small: w = n * (1 - lambda) / N, and target = (1 - w) * y_i + w * y_partner. This is linear,
so it holds for one-hot and multi-hot targets alike.

Sizes: the grid has max(2, H // P) x max(2, W // P) cells (at least 2 x 2, so n ~ U{1, N/2} never
degenerates to the whole image on small inputs); when P does not divide the image the cells
differ by one pixel and w uses the exact replaced-pixel fraction, which equals n/N otherwise.
"""
from __future__ import annotations

import torch

from core.augment import BatchStrategy, register_strategy
from core.augment.mixup import batch_is_mixed, draw_beta, mix_alpha, to_soft_targets
from core.augment.partners import cross_domain_partners


def patch_grid(height: int, width: int, patch: int) -> tuple[torch.Tensor, int]:
    """(H, W) map of cell ids of a uniform grid of about patch-sized cells, and the cell count."""
    gh, gw = max(2, height // patch), max(2, width // patch)
    rows = torch.arange(height) * gh // height
    cols = torch.arange(width) * gw // width
    return rows[:, None] * gw + cols[None, :], gh * gw


def pipmix_batch(images: torch.Tensor, soft_targets: torch.Tensor, partners: torch.Tensor, alpha: float,
                 patch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix a batch (N, C, H, W); returns (images, targets, partner weight per image)."""
    n, _, h, w = images.shape
    cells, n_cells = patch_grid(h, w, patch)
    k = torch.randint(1, max(1, n_cells // 2) + 1, (n,))            # patches to replace per image
    rank = torch.rand(n, n_cells).argsort(dim=1).argsort(dim=1)     # random order of the cells
    chosen = rank < k[:, None]                                      # (n, n_cells): k random cells
    lam = draw_beta(alpha, n)
    pix = chosen[:, cells].float() * (1 - lam)[:, None, None]       # (n, H, W) partner share per pixel
    weight = pix.mean(dim=(1, 2))                                   # = k (1 - lam) / N on exact grids
    pix = pix.to(device=images.device, dtype=images.dtype)[:, None]
    mixed = images + (images[partners] - images) * pix
    w = weight.to(soft_targets.device)[:, None]
    targets = soft_targets * (1 - w) + soft_targets[partners] * w
    return mixed, targets, weight


class PipMix(BatchStrategy):
    name = "pipmix"

    def __init__(self, num_classes: int, multi_label: bool, alpha: float, prob: float, patch: int,
                 notes: list[str] | None = None):
        self.num_classes, self.multi_label = num_classes, multi_label
        self.alpha, self.prob, self.patch = alpha, prob, patch
        self.notes = list(notes or [])

    def mix(self, images: torch.Tensor, targets: torch.Tensor, domains: torch.Tensor):
        """(images, loss targets): mixed with probability mixup_prob, else unchanged."""
        if not batch_is_mixed(self.prob):
            return images, targets
        soft = to_soft_targets(targets, self.num_classes, self.multi_label).to(images.device)
        partners = cross_domain_partners(domains)
        mixed, mixed_targets, _ = pipmix_batch(images, soft, partners, self.alpha, self.patch)
        return mixed, mixed_targets

    def training_loss(self, model, criterion, images, targets, domains, step):
        x, t = self.mix(images, targets, domains)
        logits = model(x)
        return criterion(logits, t), logits


def single_domain_note(num_domains: int, what: str) -> list[str]:
    if num_domains >= 2:
        return []
    return [f"{what}: the dataset has one domain, so mixing partners are random images, not another domain"]


@register_strategy("pipmix")
def _pipmix(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    return PipMix(num_classes, multi_label, mix_alpha(config), config.mixup_prob, config.pipmix_patch,
                  notes=single_domain_note(num_domains, "PipMix"))
