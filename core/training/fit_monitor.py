"""The spec's "Monitoring Training" signs, checked after every epoch.

Thresholds are data (TRAINING_TIPS: overfitting = train loss down while val loss up, growing
train/val gap; underfitting = both losses plateau high). A train/val gap alone is not overfitting
worth stopping for: val loss often rises while the monitored metric (val AUROC) still improves, so
the overfitting warnings also need the monitored value to have gone STALL_EPOCHS epochs without a
new best, and say so (issue 28.9: the demo warned "stop" at epochs 6, 11 and 17 of a run whose best
epoch was 20).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from core.config.tips import MONITORING

OVERFIT_EPOCHS = 2  # consecutive epochs of val loss up while train loss down
GAP_MIN = 0.15  # "train accuracy >> val accuracy": at least 15 points apart ...
GAP_GROWTH = 0.05  # ... growing over the window while val loss stopped improving
STALL_EPOCHS = 3  # epochs without a new best of the monitored value before a gap counts as overfitting
PLATEAU_EPOCHS = 3
PLATEAU_REL_CHANGE = 0.01
HIGH_LOSS_FRACTION = 0.9  # of the first epoch's loss


@dataclass
class TrainingMonitor:
    train_losses: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    reported: set = field(default_factory=set)
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    """Best monitored value so far and its epoch (not checkpointed: after a resume the stall count
    starts again, which can only delay a warning)."""

    def _track(self, epoch: int, value: Optional[float], mode: str) -> None:
        if value is None or value != value:
            return
        better = self.best_value is None or (value > self.best_value if mode == "max" else value < self.best_value)
        if better:
            self.best_value, self.best_epoch = value, epoch

    def stalled_for(self, epoch: int) -> Optional[int]:
        """Epochs since the monitored value's best, or None when it has none yet."""
        return None if self.best_epoch is None else epoch - self.best_epoch

    def update(self, epoch: int, train_loss: float, val_loss: Optional[float],
               train_acc: Optional[float], val_acc: Optional[float], monitored: Optional[float] = None,
               monitor: str = "val_loss", mode: str = "min") -> list[tuple[str, str]]:
        """Returns new (kind, message) warnings for this epoch. `monitored` is the early-stopping
        monitor's value (`monitor`, better when `mode`); without it, val loss is the monitored value."""
        self.train_losses.append(train_loss)
        self.val_losses.append(val_loss)
        if monitored is None and monitor == "val_loss":
            monitored = val_loss
        self._track(epoch, monitored, mode)
        if train_acc is not None and val_acc is not None:
            self.gaps.append(train_acc - val_acc)
        found: list[tuple[str, str]] = []
        t, v = self.train_losses, self.val_losses
        k = OVERFIT_EPOCHS
        stalled = self.stalled_for(epoch)
        not_improving = stalled is not None and stalled >= STALL_EPOCHS
        why = (f" and {monitor} has not improved for {stalled} epochs (best {self.best_value:.4g} at epoch "
               f"{self.best_epoch})" if not_improving else "")
        if len(t) > k and None not in v[-k - 1:] and not_improving:
            train_down = all(t[-i] < t[-i - 1] for i in range(1, k + 1))
            val_up = all(v[-i] > v[-i - 1] for i in range(1, k + 1))
            if train_down and val_up:
                found.append(("overfitting", f"epoch {epoch}: train loss decreasing while val loss increasing "
                              f"for {k} epochs{why}. {MONITORING['overfitting']['solution']}"))
        val_stalled = len(v) > k and None not in v[-k - 1:] and v[-1] >= min(v[-k - 1:-1])
        if (len(self.gaps) > k and self.gaps[-1] > GAP_MIN and self.gaps[-1] - self.gaps[-k - 1] > GAP_GROWTH
                and val_stalled and not_improving):
            found.append(("overfitting", f"epoch {epoch}: train accuracy {self.gaps[-1]:+.0%} above val accuracy "
                          f"and growing{why}. {MONITORING['overfitting']['solution']}"))
        p = PLATEAU_EPOCHS
        if len(t) > p and None not in v[-p - 1:]:
            flat_t = abs(t[-1] - t[-p - 1]) <= PLATEAU_REL_CHANGE * abs(t[-p - 1])
            flat_v = abs(v[-1] - v[-p - 1]) <= PLATEAU_REL_CHANGE * abs(v[-p - 1])
            high = t[-1] >= HIGH_LOSS_FRACTION * t[0]
            if flat_t and flat_v and high:
                found.append(("underfitting", f"epoch {epoch}: both losses plateau high (train {t[-1]:.3f}). "
                              f"{MONITORING['underfitting']['solution']}"))
        new = []
        for kind, msg in found:
            key = (kind, epoch)
            if key not in self.reported:
                self.reported.add(key)
                new.append((kind, msg))
        return new
