"""--tensorboard: a run's events as TensorBoard scalars and hyper-parameters in <run>/tensorboard.

An event subscriber: the Trainer passes its events through `with_tensorboard(on_event)`, so the
training loop knows nothing of it. Written with torch's standard SummaryWriter; the hyper-parameters
go through the hparams plugin into the same event file, with the run's scalars as its metrics
(`tensorboard --logdir runs` lists every run folder and compares them in the HPARAMS tab).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Callable, Optional

from core.config import ConfigError
from core.events import Event, TrainingWarning

TB_DIR = "tensorboard"
"""Sub-folder of the run folder holding the event files."""
METRICS = ("val/auroc", "val/loss", "val/acc", "train/loss", "best/value")
"""Scalars the HPARAMS tab shows beside each run's hyper-parameters."""


def check_available() -> None:
    """The one line a user sees when --tensorboard is set without the optional extra."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard: --tensorboard needs the tensorboard package: install the extra "
                          "(uv sync --extra tensorboard, or pip install 'medcls[tensorboard]') or drop the flag")


def _hparam(value: Any) -> Any:
    """What the hparams plugin accepts: numbers, strings and booleans (None is left out)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _finite(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class TensorBoardLogger:
    """Callable event sink; opens the writer at RunStarted and closes it at RunFinished."""

    def __init__(self) -> None:
        self.writer = None
        self.log_every = 10

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def scalar(self, tag: str, value: Any, step: int) -> None:
        v = _finite(value)
        if self.writer is not None and v is not None:
            self.writer.add_scalar(tag, v, step)

    def _on_RunStarted(self, e) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(e.run_dir) / TB_DIR
        first = not log_dir.exists()  # a resumed run appends to the same folder; its hparams are written once
        self.close()
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.log_every = max(1, int(e.config.get("log_every") or 10))
        if first:
            self._write_hparams(e.config)

    def _write_hparams(self, config: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        hp = {k: _hparam(v) for k, v in config.items()}
        exp, ssi, _ = hparams({k: v for k, v in hp.items() if v is not None}, {m: 0.0 for m in METRICS})
        file_writer = self.writer._get_file_writer()
        file_writer.add_summary(exp)
        file_writer.add_summary(ssi)

    def _on_StepDone(self, e) -> None:
        if e.global_step % self.log_every == 0:
            self.scalar("train/loss_step", e.loss, e.global_step)
            self.scalar("lr/step", e.lr, e.global_step)

    def _on_EpochDone(self, e) -> None:
        m = e.metrics or {}
        self.scalar("train/loss", e.train_loss, e.epoch)
        self.scalar("train/acc", e.train_acc, e.epoch)
        self.scalar("lr", e.lr, e.epoch)
        for key in ("val_loss", "val_auroc", "val_acc"):
            self.scalar(key.replace("_", "/", 1), m.get(key), e.epoch)
        for name, value in (m.get("val_auroc_per_class") or {}).items():
            self.scalar(f"val_auroc_per_class/{name}", value, e.epoch)

    def _on_EarlyStopState(self, e) -> None:
        if e.best_epoch is not None:
            self.scalar("best/value", e.best_value, e.best_epoch)

    def _on_SystemStats(self, e) -> None:
        if e.scope == "epoch":
            for key in ("gpu_util_pct", "gpu_mem_used_gib", "cpu_pct", "rss_gib", "loader_wait_frac"):
                self.scalar(f"system/{key}", getattr(e, key), e.epoch)

    def _on_RunFinished(self, e) -> None:
        if self.writer is not None:
            from torch.utils.tensorboard.summary import hparams

            _, _, sei = hparams({}, {})  # session end: the HPARAMS tab shows the run as done
            self.writer._get_file_writer().add_summary(sei)
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def with_tensorboard(on_event: Callable[[Event], None]) -> Callable[[Event], None]:
    """`on_event` plus a TensorBoardLogger. A failing write (full disk ...) stops the logging with one
    warning and never the training."""
    check_available()
    logger = TensorBoardLogger()

    def fan_out(event: Event) -> None:
        on_event(event)
        nonlocal logger
        if logger is None:
            return
        try:
            logger(event)
        except Exception as err:  # noqa: BLE001 - logging is optional, the run is not
            logger.writer = None
            logger = None
            on_event(TrainingWarning(kind="data", message=f"tensorboard: logging stopped ({err}); training goes on"))

    fan_out.tensorboard = logger  # type: ignore[attr-defined] - for tests
    return fan_out
