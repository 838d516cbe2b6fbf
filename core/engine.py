"""Old import path kept for users' scripts and tests: the Trainer lives in core/training/trainer.py."""
from core.training.oom import is_oom
from core.training.trainer import Position, Trainer

__all__ = ["Position", "Trainer", "is_oom"]
