"""Warmup then cosine, as a pure function of the optimizer step (so resume needs no state)."""
from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based, before the update)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def apply_lr(optimizer, peak_lr: float, factor: float) -> float:
    """Set every group's LR to peak * factor * its lr_scale (layer-wise decay); returns the head LR."""
    lr = peak_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
