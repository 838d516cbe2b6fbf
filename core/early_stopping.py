"""Early stopping with the semantics users know from Lightning: monitor, mode, patience, min_delta."""
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
    divergence_threshold: Optional[float] = None
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    wait: int = 0
    stopped: bool = False
    reason: str = ""

    def is_improvement(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def update(self, epoch: int, metrics: dict) -> bool:
        """Feed one epoch's metrics; returns True if this epoch is the new best."""
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            self.stopped = True
            self.reason = f"{self.monitor} is {value} (non-finite) at epoch {epoch}"
            return False
        val_loss = metrics.get("val_loss")
        if self.divergence_threshold is not None and val_loss is not None and val_loss > self.divergence_threshold:
            self.stopped = True
            self.reason = f"val_loss {val_loss:.4g} above divergence threshold {self.divergence_threshold}"
        if self.is_improvement(value):
            self.best_value = float(value)
            self.best_epoch = epoch
            self.wait = 0
            return True
        self.wait += 1
        if self.patience and self.wait >= self.patience and not self.stopped:
            self.stopped = True
            self.reason = f"no improvement of {self.monitor} for {self.wait} epochs (best {self.best_value:.4f} at epoch {self.best_epoch})"
        return False

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
