"""Vectorised partner choice for batch mixing: for every sample, a random partner from the best
non-empty tier of candidates, else the sample itself.

The published XDomainMix code searches partners with per-sample Python loops of random trials;
here every tier is an (N, N) boolean matrix and one argmax over tier + uniform noise picks a
uniformly random member of the highest tier that has one. Draws use the global torch RNG on the
CPU, so the engine's saved RNG state replays them exactly on resume, on any device.
"""
from __future__ import annotations

from typing import Sequence

import torch


def label_keys(targets: torch.Tensor) -> torch.Tensor:
    """(N,) class indices or (N, C) label vectors -> an (N, N) 'same label' matrix.

    Multi-label: same label = identical finding set (a partner with any other finding would
    carry that finding's features into the mix and make the kept label wrong).
    """
    if targets.ndim == 1:
        return targets[:, None] == targets[None, :]
    hard = targets > 0.5
    return (hard[:, None, :] == hard[None, :, :]).all(dim=-1)


def tiered_partners(tiers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Index of a partner per row: uniform within the first tier (in order) with a candidate.

    tiers: (N, N) bool matrices, best first; the diagonal is ignored (self is the last resort).
    """
    n = tiers[0].shape[0]
    device = tiers[0].device
    level = torch.zeros(n, n, dtype=torch.float32)
    for rank, tier in enumerate(tiers):
        value = float(len(tiers) - rank)
        level = torch.where(tier.cpu() & (level == 0), torch.full_like(level, value), level)
    level.fill_diagonal_(0.0)
    noise = torch.rand(n, n)  # global CPU RNG: identical on CPU and CUDA runs, replayed on resume
    score = torch.where(level > 0, level + noise, torch.full_like(level, -1.0))
    best = score.argmax(dim=1)
    has_any = (level > 0).any(dim=1)
    partners = torch.where(has_any, best, torch.arange(n))
    return partners.to(device)


def cross_domain_partners(domains: torch.Tensor) -> torch.Tensor:
    """Mixup partner: another domain where the batch has one, else any other sample."""
    n = domains.shape[0]
    other_domain = domains[:, None] != domains[None, :]
    anyone = torch.ones(n, n, dtype=torch.bool, device=domains.device)
    return tiered_partners([other_domain, anyone])


def random_partners(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Any other sample (plain mixup)."""
    return tiered_partners([torch.ones(n, n, dtype=torch.bool, device=device)])


def same_class_partners(targets: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """XDomainMix j: same class + other domain, else same class (other index), else itself."""
    same = label_keys(targets)
    other_domain = domains[:, None] != domains[None, :]
    return tiered_partners([same & other_domain, same])


def other_class_partners(targets: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """XDomainMix k: other class + other domain, else other domain, else other class, else itself.

    The paper asks for both; the authors' code falls back to 'other domain' (class unchecked),
    which matters more here because only k's domain-specific, class-generic part is used.
    """
    differ = ~label_keys(targets)
    other_domain = domains[:, None] != domains[None, :]
    return tiered_partners([differ & other_domain, other_domain, differ])
