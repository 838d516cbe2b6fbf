"""Training divergence: non-finite steps and loss explosions, decided on host values read once per step.

The engine skips an optimizer step whose loss or gradients are not finite (with fp16 the GradScaler
skips it), so the weights stay finite; this guard counts those steps and decides when a run cannot
recover: K non-finite steps in a row, or a step loss above `factor` x the first epoch's running loss.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class DivergenceGuard:
    max_nonfinite_steps: int = 5
    """The run stops when this many optimizer steps in a row are non-finite (each one is skipped)."""
    explosion_factor: Optional[float] = 1e3
    """Stop when a step's loss exceeds this multiple of the first epoch's running loss (None: off)."""
    consecutive: int = 0
    skipped_total: int = 0
    ref_sum: float = 0.0
    ref_count: int = 0
    ref_frozen: bool = False
    """The reference is the first epoch's running loss; frozen once that epoch ends (kept on resume)."""

    @property
    def reference(self) -> Optional[float]:
        return self.ref_sum / self.ref_count if self.ref_count else None

    def observe(self, loss: float, finite: bool, step: int) -> Optional[str]:
        """Feed one optimizer step's mean loss; returns why training must stop, or None."""
        if not finite:
            self.consecutive += 1
            self.skipped_total += 1
            if self.consecutive >= self.max_nonfinite_steps:
                return (f"{self.consecutive} optimizer steps in a row had a non-finite loss or gradient "
                        f"(last at step {step}; {self.skipped_total} skipped in all)")
            return None
        self.consecutive = 0
        ref = self.reference
        if self.explosion_factor is not None and ref is not None and ref > 0 and loss > self.explosion_factor * ref:
            return (f"training loss exploded: {loss:.4g} at step {step} is more than {self.explosion_factor:g} x "
                    f"the first epoch's running loss {ref:.4g}")
        if not self.ref_frozen and math.isfinite(loss):
            self.ref_sum += loss
            self.ref_count += 1
        return None

    def end_epoch(self) -> None:
        if self.ref_count:
            self.ref_frozen = True

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if key in self.__dataclass_fields__:
                setattr(self, key, value)


def divergence_advice(lr: float, mixed_precision: bool, warmup_epochs: float) -> str:
    """Which settings to change, naming the flags."""
    tips = [f"lower --lr (now {lr:g}, e.g. {lr / 10:g})"]
    if not warmup_epochs:
        tips.append("add a warmup (--warmup_epochs 1)")
    if mixed_precision:
        tips.append("try --no_mixed_precision")
    return "; ".join(tips)
