"""Small frozen dataclasses the engine emits, and the Control object it obeys.

The callback runs on the training thread: faces (TUI, CLI progress, tests) must keep it cheap,
e.g. append to a buffer and return.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class DataProgress(Event):
    """Long data work before training (rendering, decoding, caching, feature extraction)."""

    done: int
    total: int
    description: str


@dataclass(frozen=True)
class RunStarted(Event):
    run_dir: str
    run_name: str
    config: dict
    classes: list
    multi_label: bool
    n_train: int
    n_val: int
    steps_per_epoch: int
    total_steps: int
    start_epoch: int
    device: str
    amp_dtype: Optional[str]
    resumed: bool = False
    notes: list = field(default_factory=list)


@dataclass(frozen=True)
class StepDone(Event):
    epoch: int
    step: int
    """Optimizer step within the epoch (1-based)."""
    steps_per_epoch: int
    global_step: int
    total_steps: int
    loss: float
    lr: float
    images_per_sec: float
    elapsed_s: float
    eta_s: float
    gpu_mem_gib: Optional[float] = None


@dataclass(frozen=True)
class EpochDone(Event):
    epoch: int
    """1-based number of the epoch just finished."""
    epochs: int
    train_loss: float
    metrics: dict
    """val_loss, val_auroc, val_acc (single-label), val_auroc_per_class {class: auroc or None},
    val_auroc_excluded {class: why it has no AUROC}."""
    lr: float
    elapsed_s: float
    train_acc: Optional[float] = None


@dataclass(frozen=True)
class EarlyStopState(Event):
    monitor: str
    mode: str
    value: Optional[float]
    best_value: Optional[float]
    best_epoch: Optional[int]
    patience: int
    """0 = early stopping off (best is still tracked for best.pt)."""
    wait: int
    """Epochs without improvement so far."""
    improved: bool
    should_stop: bool
    reason: str = ""


@dataclass(frozen=True)
class TrainingWarning(Event):
    kind: str
    """overfitting, underfitting, oom, data, config, nonfinite ..."""
    message: str
    epoch: Optional[int] = None


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str
    reason: str
    """epoch, best, save_now, stop."""
    epoch: int
    global_step: int


@dataclass(frozen=True)
class StatusChanged(Event):
    status: str
    """running, paused, stopping."""


@dataclass(frozen=True)
class SystemStats(Event):
    """The machine as the run uses it (core/hardware/system_stats.py): a live sample every ~1.5 s (scope "live",
    not logged) and one per epoch over its training steps (scope "epoch", in metrics.jsonl)."""

    epoch: int
    scope: str
    """live or epoch."""
    steps: int
    """Optimizer steps the figures cover."""
    cpu_pct: Optional[float]
    """CPU of this process and its loader workers, 100 = one core."""
    rss_gib: Optional[float]
    """Resident memory of this process."""
    gpu_util_pct: Optional[float]
    """NVML utilisation of the training GPU (epoch: mean of the samples); None off the GPU."""
    gpu_mem_used_gib: Optional[float]
    """NVML memory in use on the card (all processes; epoch: peak of the samples)."""
    gpu_mem_total_gib: Optional[float]
    loader_wait_s: float
    """Host time per step spent waiting for the next batch."""
    step_s: float
    """Host time per step (loader wait + compute)."""
    loader_wait_frac: float
    starved: bool
    """Loader wait above half the step time: more --num_workers or a cache would speed it up."""
    on_gpu: bool = False


@dataclass(frozen=True)
class RunFinished(Event):
    status: str
    """finished, early_stopped, stopped, failed, diverged (non-finite steps or a loss explosion)."""
    run_dir: str
    summary: dict
    error: Optional[str] = None


EventCallback = Callable[[Event], None]


class Control:
    """Thread-safe requests from a face to the running loop; checked once per step."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._save = threading.Event()
        self.finished = threading.Event()
        """Set by the engine in a `finally:` when fit() returns (workers may be marked done earlier)."""

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused loop must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def save_now(self) -> None:
        self._save.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def take_save_request(self) -> bool:
        if self._save.is_set():
            self._save.clear()
            return True
        return False

    def wait_while_paused(self, timeout: float = 0.1) -> None:
        self._running.wait(timeout)
