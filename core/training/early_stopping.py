"""Early stopping and best-checkpoint tracking, with the semantics users know from Lightning.

Two separate questions, as Lightning's ModelCheckpoint and EarlyStopping keep them apart:
  * best (best.pt): the monitored value strictly better than every earlier epoch; min_delta plays
    no part, so 0.800, 0.805, 0.809 makes 0.809 the best;
  * patience: the counter resets only on an improvement of more than min_delta over the value
    that last reset it.
divergence_threshold is read on the monitored value itself (worse than the threshold: stop), and an
epoch that diverged or has a non-finite monitor is never the best.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class EarlyStopping:
    monitor: str
    mode: str = "max"
    patience: int = 0
    """0 disables stopping; the best value is still tracked for best.pt."""
    min_delta: float = 0.0
    """Only for patience: how much better than `patience_value` an epoch must be to reset `wait`."""
    divergence_threshold: Optional[float] = None
    """Stop when the monitored value is worse than this (above for mode min, below for mode max)."""
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    patience_value: Optional[float] = None
    """The value the patience counter is measured from (moves only by more than min_delta)."""
    wait: int = 0
    stopped: bool = False
    reason: str = ""

    def _better(self, value: float, than: Optional[float], delta: float) -> bool:
        if than is None:
            return True
        if self.mode == "max":
            return value > than + delta
        return value < than - delta

    def is_improvement(self, value: float) -> bool:
        """Would `value` be the new best checkpoint (strictly better, min_delta not applied)?"""
        return self._better(value, self.best_value, 0.0)

    def _diverged(self, value: float) -> bool:
        if self.divergence_threshold is None:
            return False
        return value > self.divergence_threshold if self.mode == "min" else value < self.divergence_threshold

    def update(self, epoch: int, metrics: dict) -> bool:
        """Feed one epoch's metrics; returns True if this epoch is the new best (save best.pt)."""
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            self.stopped = True
            self.reason = f"{self.monitor} is {value} (non-finite) at epoch {epoch}"
            return False
        if self._diverged(value):
            self.stopped = True
            side = "above" if self.mode == "min" else "below"
            self.reason = (f"{self.monitor} {value:.4g} is {side} the divergence threshold "
                           f"{self.divergence_threshold:g} at epoch {epoch}")
            return False
        improved = self.is_improvement(value)
        if improved:
            self.best_value = float(value)
            self.best_epoch = epoch
        if self._better(value, self.patience_value, self.min_delta):
            self.patience_value = float(value)
            self.wait = 0
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                self.stopped = True
                self.reason = (f"no improvement of {self.monitor} by more than {self.min_delta:g} for {self.wait} "
                               f"epochs (best {self.best_value:.4f} at epoch {self.best_epoch})")
        return improved

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        if self.patience_value is None and self.best_value is not None and "patience_value" not in state:
            self.patience_value = self.best_value  # checkpoint from before the split
