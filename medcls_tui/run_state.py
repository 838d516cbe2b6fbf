"""What a run looks like to the UI, folded from engine events (no Textual here).

`RunState.apply(event)` takes the engine's event dataclasses (live run) and
`RunState.from_records(read_metrics(run_dir))` the same events as written to metrics.jsonl
(past run), so the live screen and the runs screen draw from one structure.
Only the UI thread touches a RunState; the training thread only fills the EventBuffer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable, Optional

TERMINAL = ("finished", "early_stopped", "stopped", "failed", "diverged")
MAX_POINTS = 240
"""Points per plotted line: plot build time grows with points (docs/TUI.md pitfalls)."""


@dataclass
class EpochRecord:
    epoch: int
    train_loss: Optional[float]
    val_loss: Optional[float]
    metrics: dict
    lr: Optional[float]
    train_acc: Optional[float] = None


@dataclass
class WarningRecord:
    kind: str
    message: str
    epoch: Optional[int] = None


@dataclass
class RunState:
    status: str = "starting"
    """starting, loading, running, paused, stopping, then one of TERMINAL."""
    run_name: str = ""
    run_dir: str = ""
    config: dict = field(default_factory=dict)
    device: str = ""
    amp_dtype: Optional[str] = None
    classes: list = field(default_factory=list)
    multi_label: bool = False
    n_train: int = 0
    n_val: int = 0
    resumed: bool = False
    notes: list = field(default_factory=list)

    epochs: int = 0
    epoch: int = 0
    """1-based epoch in progress (or last finished)."""
    step: int = 0
    steps_per_epoch: int = 0
    global_step: int = 0
    total_steps: int = 0
    loss: Optional[float] = None
    lr: Optional[float] = None
    images_per_sec: Optional[float] = None
    elapsed_s: Optional[float] = None
    eta_s: Optional[float] = None
    gpu_mem_gib: Optional[float] = None
    data_progress: Optional[tuple[int, int, str]] = None
    system: Optional[Any] = None
    """Latest SystemStats (live sample or epoch record): GPU/CPU use and loader wait."""

    step_x: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    step_lr: list = field(default_factory=list)
    epoch_log: list = field(default_factory=list)

    monitor: str = ""
    monitor_mode: str = "max"
    monitor_value: Optional[float] = None
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    patience: int = 0
    wait: int = 0
    should_stop: bool = False
    stop_reason: str = ""

    warnings: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    """(reason, path, epoch) of every CheckpointSaved."""
    summary: dict = field(default_factory=dict)
    error: Optional[str] = None

    elapsed_offset: float = 0.0
    """Time the run had already trained before this session (a resumed run's clock continues)."""

    version: int = 0
    """Bumped by every applied event: widgets redraw only when it moved."""
    curve_version: int = 0
    """Bumped when a plotted series changed."""

    # ------------------------------------------------------------------ folding
    def apply(self, event: Any) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
            self.version += 1

    def apply_all(self, events: Iterable[Any]) -> None:
        for event in events:
            self.apply(event)

    def apply_record(self, record: dict) -> None:
        """One metrics.jsonl record ({"event": name, ...})."""
        name = record.get("event")
        if name == "Step":
            self._on_step_record(record)
            self.version += 1
            return
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(SimpleNamespace(**record))
            self.version += 1

    def _on_step_record(self, record: dict) -> None:
        """metrics.jsonl's every-`log_every`-steps record: the curve point, and where the run is (a run
        followed from its folder shows its epoch and step before the first epoch ends)."""
        global_step = int(record.get("global_step") or 0)
        self._add_step(global_step, record.get("loss"), record.get("lr"))
        self.global_step = max(self.global_step, global_step)
        epoch = record.get("epoch")
        if isinstance(epoch, int) and epoch > 0:
            self.epoch = epoch
            if self.steps_per_epoch:
                self.step = max(0, min(self.steps_per_epoch, global_step - (epoch - 1) * self.steps_per_epoch))
        self.loss, self.lr = _num(record.get("loss")), _num(record.get("lr"))
        if isinstance(record.get("images_per_sec"), (int, float)):
            self.images_per_sec = float(record["images_per_sec"])
        if self.status in ("starting", "loading"):
            self.status = "running"

    @classmethod
    def from_records(cls, records: Iterable[dict], summary: Optional[dict] = None) -> "RunState":
        state = cls()
        for record in records:
            state.apply_record(record)
        if summary:
            state.summary = dict(summary)
            if summary.get("status"):
                state.status = summary["status"]
            state.error = summary.get("error") or state.error
        return state

    @classmethod
    def for_resume(cls, records: Iterable[dict]) -> "RunState":
        """A resumed run's live state starts from its history: loss curve, epochs, best epoch and
        patience, elapsed time; the new session's events continue it."""
        state = cls.from_records(records)
        state.status, state.summary, state.error = "starting", {}, None
        state.should_stop, state.stop_reason = False, ""
        state.elapsed_offset = float(state.elapsed_s or 0.0)
        return state

    # ------------------------------------------------------------------ handlers
    def _on_DataProgress(self, e) -> None:
        self.data_progress = (int(e.done), int(e.total), str(e.description))
        if self.status == "starting":
            self.status = "loading"

    def _on_RunStarted(self, e) -> None:
        self.status = "running"
        self.data_progress = None
        self.run_name, self.run_dir = e.run_name, e.run_dir
        self.config = dict(getattr(e, "config", {}) or {})
        self.device, self.amp_dtype = getattr(e, "device", ""), getattr(e, "amp_dtype", None)
        self.classes = list(getattr(e, "classes", []) or [])
        self.multi_label = bool(getattr(e, "multi_label", False))
        self.n_train, self.n_val = int(getattr(e, "n_train", 0)), int(getattr(e, "n_val", 0))
        self.steps_per_epoch = int(getattr(e, "steps_per_epoch", 0))
        self.total_steps = int(getattr(e, "total_steps", 0))
        self.epochs = int(self.config.get("epochs") or 0)
        start_epoch = int(getattr(e, "start_epoch", 0))
        self.epoch = start_epoch
        self.global_step = max(self.global_step, start_epoch * self.steps_per_epoch)
        self.resumed = bool(getattr(e, "resumed", False))
        self.notes = list(getattr(e, "notes", []) or [])
        self.monitor = self.monitor or str(self.config.get("monitor") or "val_auroc")
        self.monitor_mode = str(self.config.get("monitor_mode") or self.monitor_mode)
        self.patience = int(self.config.get("early_stopping") or 0)

    def _on_StepDone(self, e) -> None:
        if self.status in ("starting", "loading"):
            self.status = "running"
        self.epoch, self.step = e.epoch, e.step
        self.steps_per_epoch, self.total_steps = e.steps_per_epoch, e.total_steps
        self.global_step = e.global_step
        self.loss, self.lr = e.loss, e.lr
        self.images_per_sec, self.eta_s = e.images_per_sec, e.eta_s
        self.elapsed_s = None if e.elapsed_s is None else self.elapsed_offset + e.elapsed_s
        self.gpu_mem_gib = e.gpu_mem_gib
        self._add_step(e.global_step, e.loss, e.lr)

    def _add_step(self, global_step, loss, lr) -> None:
        self.step_x.append(float(global_step))
        self.step_loss.append(_num(loss))
        self.step_lr.append(_num(lr))
        self.curve_version += 1

    def _on_EpochDone(self, e) -> None:
        metrics = dict(e.metrics or {})
        self.epoch = int(e.epoch)
        self.epochs = int(getattr(e, "epochs", self.epochs) or self.epochs)
        elapsed = getattr(e, "elapsed_s", None)
        self.elapsed_s = self.elapsed_s if elapsed is None else self.elapsed_offset + elapsed
        self.epoch_log = [r for r in self.epoch_log if r.epoch < self.epoch]  # a resumed run re-reports
        self.epoch_log.append(EpochRecord(epoch=self.epoch, train_loss=_num(e.train_loss),
                                          val_loss=_num(metrics.get("val_loss")), metrics=metrics,
                                          lr=_num(getattr(e, "lr", None)),
                                          train_acc=getattr(e, "train_acc", None)))
        if self.steps_per_epoch:
            self.step = self.steps_per_epoch
        self.curve_version += 1

    def _on_EarlyStopState(self, e) -> None:
        self.monitor, self.monitor_mode = e.monitor, e.mode
        self.monitor_value, self.best_value, self.best_epoch = e.value, e.best_value, e.best_epoch
        self.patience, self.wait = int(e.patience), int(e.wait)
        self.should_stop, self.stop_reason = bool(e.should_stop), str(getattr(e, "reason", "") or "")

    def _on_SystemStats(self, e) -> None:
        self.system = e

    def _on_TrainingWarning(self, e) -> None:
        self.warnings.append(WarningRecord(kind=e.kind, message=e.message, epoch=getattr(e, "epoch", None)))
        if e.kind == "error" and not self.error:
            self.error = e.message

    def _on_CheckpointSaved(self, e) -> None:
        self.checkpoints.append((e.reason, e.path, getattr(e, "epoch", None)))

    def _on_StatusChanged(self, e) -> None:
        if self.status not in TERMINAL:
            self.status = e.status

    def _on_RunFinished(self, e) -> None:
        self.status = e.status
        self.summary = dict(getattr(e, "summary", {}) or {})
        self.run_dir = getattr(e, "run_dir", "") or self.run_dir
        if getattr(e, "error", None):
            self.error = e.error
        self.eta_s = 0.0 if self.status != "failed" else self.eta_s

    # ------------------------------------------------------------------ views
    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress_fraction(self) -> float:
        if self.finished and self.status in ("finished",):
            return 1.0
        return self.global_step / self.total_steps if self.total_steps else 0.0

    @property
    def latest(self) -> Optional[EpochRecord]:
        return self.epoch_log[-1] if self.epoch_log else None

    @property
    def per_class_auroc(self) -> dict:
        """{class: AUROC} of the latest validation (summary's when the run is done)."""
        if self.epoch_log:
            per = self.epoch_log[-1].metrics.get("val_auroc_per_class") or {}
            if per:
                return dict(per)
        return dict(self.summary.get("val_auroc_per_class") or {})

    @property
    def excluded_classes(self) -> dict:
        """{class: why its AUROC is undefined} of the latest validation (left out of the macro AUROC)."""
        if self.epoch_log:
            return dict(self.epoch_log[-1].metrics.get("val_auroc_excluded") or {})
        return dict(self.summary.get("val_auroc_excluded") or {})

    @property
    def last_checkpoint(self) -> Optional[str]:
        return self.checkpoints[-1][1] if self.checkpoints else None

    def epoch_of(self, global_step: float) -> float:
        return global_step / self.steps_per_epoch if self.steps_per_epoch else global_step

    def loss_series(self, max_points: int = MAX_POINTS) -> dict[str, tuple[list, list]]:
        """x in epochs: per-step train loss (down-sampled), per-epoch train and val loss."""
        out: dict[str, tuple[list, list]] = {}
        if self.step_x:
            xs, ys = downsample([self.epoch_of(x) for x in self.step_x], self.step_loss, max_points)
            out["train/step"] = (xs, ys)
        ep = [r for r in self.epoch_log if r.train_loss is not None]
        if ep:
            out["train/epoch"] = ([float(r.epoch) for r in ep], [r.train_loss for r in ep])
        ev = [r for r in self.epoch_log if r.val_loss is not None]
        if ev:
            out["val"] = ([float(r.epoch) for r in ev], [r.val_loss for r in ev])
        return _finite(out)

    def metric_series(self) -> tuple[str, list, list]:
        name = self.monitor or "val_auroc"
        pts = [(float(r.epoch), r.metrics.get(name)) for r in self.epoch_log]
        pts = [(x, float(y)) for x, y in pts if isinstance(y, (int, float)) and math.isfinite(y)]
        return name, [p[0] for p in pts], [p[1] for p in pts]

    def lr_series(self, max_points: int = MAX_POINTS) -> tuple[list, list]:
        if self.step_x and len(self.step_x) >= len(self.epoch_log):  # past runs log steps sparsely
            xs, ys = downsample([self.epoch_of(x) for x in self.step_x], self.step_lr, max_points)
        else:
            xs = [float(r.epoch) for r in self.epoch_log if r.lr is not None]
            ys = [r.lr for r in self.epoch_log if r.lr is not None]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        return [p[0] for p in pts], [p[1] for p in pts]


def _num(value: Any) -> Optional[float]:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _finite(series: dict[str, tuple[list, list]]) -> dict[str, tuple[list, list]]:
    out = {}
    for label, (xs, ys) in series.items():
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if pts:
            out[label] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most `max_points` points: the mean of x and of y over equal-count buckets (None skipped)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        vals = [y for y in ys[lo:hi] if y is not None and math.isfinite(y)]
        if not vals:
            continue
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(vals) / len(vals))
    return out_x, out_y


def count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs', '0 runs': never '1 epochs' or 'epoch(s)'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_value(value: Optional[float], digits: int = 4) -> str:
    if value is None:
        return "--"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}f}"
