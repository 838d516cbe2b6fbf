"""Checkpoint state: what a checkpoint holds (tensors and plain values only, so `weights_only` loads it),
how it is put back, the finite-weights check before any write, and when a periodic one is due.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from core.runs.checkpoint import capture_rng

FORMAT = 1


@dataclass
class Position:
    """Where the loop is: resume restarts exactly here."""

    epoch: int = 0
    """0-based epoch in progress."""
    step_in_epoch: int = 0
    """Optimizer steps already done in this epoch."""
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_correct: float = 0.0
    epoch_seen: int = 0


def training_state(t) -> dict:
    """The full state of a Trainer `t` (its components, position and RNG) as a checkpoint dict."""
    return {
        "format": FORMAT,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": {"global_step": t.pos.global_step, "total_steps": t.total_steps, "warmup_steps": t.warmup_steps},
        "scaler": t.scaler.state_dict(),
        "strategy": t.strategy.state_dict(),
        "strategy_modules": [m.state_dict() for m in t.strategy.modules()],
        "early_stopping": t.early.state_dict(),
        "divergence": t.guard.state_dict(),
        "position": vars(t.pos).copy(),
        "micro_splits": t.micro_splits,
        "monitor": {"train_losses": t.monitor.train_losses, "val_losses": t.monitor.val_losses, "gaps": t.monitor.gaps},
        "last_metrics": t.last_metrics,
        "rng": capture_rng(),
        "classes": t.bundle.classes,
        "world_size": t.dist.world_size,
    }


def restore_training_state(t, state: dict) -> Optional[dict]:
    """Put a checkpoint back into Trainer `t`; returns the RNG state, restored last by the loop."""
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scaler.load_state_dict(state["scaler"])
    t.strategy.load_state_dict(state["strategy"])
    for module, sd in zip(t.strategy.modules(), state["strategy_modules"]):
        module.load_state_dict(sd)
    t.early.load_state_dict(state["early_stopping"])
    t.guard.load_state_dict(state.get("divergence", {}))
    t.pos = Position(**state["position"])
    t.micro_splits = int(state["micro_splits"])
    mon = state["monitor"]
    t.monitor.train_losses, t.monitor.val_losses, t.monitor.gaps = (
        list(mon["train_losses"]), list(mon["val_losses"]), list(mon["gaps"]))
    t.last_metrics = state.get("last_metrics", {})
    return state["rng"]


def weights_finite(model: nn.Module, extra_modules=()) -> bool:
    """All weights and buffers finite (one host read); checked before any checkpoint is written."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point() and t.numel()]
    tensors += [p for m in extra_modules for p in m.parameters()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class PeriodicCheckpoints:
    """--checkpoint_every N steps, else every --checkpoint_minutes: bounds what a kill loses."""

    def __init__(self, every_steps: Optional[int], minutes: Optional[float]):
        self.every_steps = every_steps
        self.minutes = minutes
        self.last_time = time.monotonic()

    def due(self, global_step: int, step_in_epoch: int, steps_per_epoch: int) -> bool:
        if step_in_epoch >= steps_per_epoch:
            return False  # the epoch-end checkpoint follows right away
        if self.every_steps:
            return global_step % self.every_steps == 0
        return bool(self.minutes) and time.monotonic() - self.last_time >= self.minutes * 60

    def saved(self) -> None:
        self.last_time = time.monotonic()
