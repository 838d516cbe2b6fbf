"""Batch strategies: how one training (micro-)batch becomes a loss.

Pixel-level per-image augmentation (crop, rotation, contrast) lives in core/training/transforms.py and
runs in the data loader. Everything that needs the whole batch (mixup, PipMix) or the model's
features (XDomainMix) is a strategy registered here, so the engine has no if-chains for them.
"""
from __future__ import annotations

import torch
from torch import nn

from core.config.registry import Registry

STRATEGIES: Registry = Registry("augmentation")
register_strategy = STRATEGIES.register
"""Decorator: `fn(config, num_classes, num_domains, multi_label) -> BatchStrategy`."""


class BatchStrategy:
    """Plain ERM: logits = model(x), loss = criterion(logits, y)."""

    name = "erm"
    notes: list[str] = []

    def training_loss(self, model: nn.Module, criterion: nn.Module, images: torch.Tensor,
                      targets: torch.Tensor, domains: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        return criterion(logits, targets), logits

    def begin_step(self) -> None:
        """Called before the micro-batches of one optimizer step (again if an OOM retries the step)."""

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Called after the model's optimizer step was taken (not after a skipped non-finite step)."""

    def modules(self) -> list[nn.Module]:
        """Extra trainable modules (moved to the device, saved in checkpoints)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def strategy_names() -> list[str]:
    _import_all()
    return STRATEGIES.names()


def build_strategy(config, num_classes: int, num_domains: int, multi_label: bool) -> BatchStrategy:
    """Pick the strategy for config.augmentation (+ plain input mixup when mixup_alpha > 0)."""
    _import_all()
    aug = config.augmentation or "standard"
    if aug in ("none", "standard"):
        aug = "mixup" if config.mixup_alpha > 0 else "erm"
    return STRATEGIES.get(aug)(config, num_classes, num_domains, multi_label)


@register_strategy("erm")
def _erm(config, num_classes, num_domains, multi_label) -> BatchStrategy:
    return BatchStrategy()


def _import_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
