"""CLI face of the engine's events: a rich progress bar on a TTY, plain log lines otherwise."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from core.events import (
    CheckpointSaved,
    DataProgress,
    EarlyStopState,
    EpochDone,
    Event,
    RunFinished,
    RunStarted,
    StatusChanged,
    StepDone,
    SystemStats,
    TrainingWarning,
)

from .run_state import count


def fmt(value: Optional[float], spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


class ConsoleReporter:
    """Callable event sink. Cheap per step: the rich bar refreshes on its own timer."""

    def __init__(self, stream: TextIO | None = None, tty: Optional[bool] = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet = quiet
        self.console = Console(file=self.stream, force_terminal=self.tty, highlight=False,
                               no_color=not self.tty)
        self.progress: Optional[Progress] = None
        self.task = None
        self.last_plain = 0.0
        self.monitor_text = ""

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def on_DataProgress(self, e: DataProgress) -> None:
        if not self.tty and (time.time() - self.last_plain > 5 or e.done == e.total):
            if e.done == e.total or e.done == 0:
                self.line(f"data: {e.description} {e.done}/{e.total}")
            self.last_plain = time.time()

    def on_RunStarted(self, e: RunStarted) -> None:
        cfg = e.config
        self.line(f"run {e.run_name} -> {e.run_dir}{' (resumed)' if e.resumed else ''}")
        self.line(f"model {cfg['model']} ({cfg['mode']}), dataset {cfg['dataset']}: {e.n_train} train / {e.n_val} val, "
                  f"{len(e.classes)} classes{' multi-label' if e.multi_label else ''}, device {e.device}"
                  f"{', amp ' + e.amp_dtype if e.amp_dtype else ''}")
        for note in e.notes:
            self.line(f"note: {note}")
        if self.tty and not self.quiet:
            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                TextColumn("step {task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[monitor]}"),
                TextColumn("{task.fields[ips]} img/s"), TimeRemainingColumn(),
                console=self.console, refresh_per_second=4, transient=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=e.total_steps, completed=e.start_epoch * e.steps_per_epoch,
                                               epoch=f"{e.start_epoch + 1}/{cfg['epochs']}", loss="-", monitor="",
                                               ips="-")

    def on_StepDone(self, e: StepDone) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=e.global_step, epoch=f"{e.epoch}", loss=f"{e.loss:.4f}",
                                 ips=f"{e.images_per_sec:.0f}", monitor=self.monitor_text)
        elif not self.quiet and time.time() - self.last_plain > 10:
            self.last_plain = time.time()
            self.line(f"epoch {e.epoch} step {e.step}/{e.steps_per_epoch} loss {e.loss:.4f} lr {e.lr:.3g} "
                      f"{e.images_per_sec:.0f} img/s eta {e.eta_s:.0f}s")

    def on_EpochDone(self, e: EpochDone) -> None:
        m = e.metrics
        acc = f" val_acc {fmt(m.get('val_acc'))}" if m.get("val_acc") is not None else ""
        self.line(f"epoch {e.epoch}/{e.epochs} train_loss {e.train_loss:.4f} val_loss {fmt(m.get('val_loss'))} "
                  f"val_auroc {fmt(m.get('val_auroc'))}{acc} lr {e.lr:.3g} ({e.elapsed_s:.0f}s)")

    def on_SystemStats(self, e: SystemStats) -> None:
        if e.scope == "epoch" and not self.quiet:
            self.line(f"epoch {e.epoch} system: {system_summary(e)}")

    def on_EarlyStopState(self, e: EarlyStopState) -> None:
        best = f"best {fmt(e.best_value)} @ epoch {e.best_epoch}"
        patience = f", patience {e.wait}/{e.patience}" if e.patience else ""
        self.monitor_text = f"{e.monitor} {best}{patience}"

    def on_TrainingWarning(self, e: TrainingWarning) -> None:
        self.line(f"warning ({e.kind}): {e.message}")

    def on_CheckpointSaved(self, e: CheckpointSaved) -> None:
        if e.reason in ("save_now", "stop"):
            self.line(f"checkpoint saved ({e.reason}): {e.path}")

    def on_StatusChanged(self, e: StatusChanged) -> None:
        self.line(f"status: {e.status}")

    def on_RunFinished(self, e: RunFinished) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if not e.run_dir:
            return  # failed before a run folder existed: the caller reports the error itself
        s = e.summary
        self.line(f"{e.status}: {count(int(s.get('epochs_completed') or 0), 'epoch')}, best {s.get('monitor')} "
                  f"{fmt(s.get('best_value'))} at epoch {s.get('best_epoch')}; run folder {e.run_dir}")
        if s.get("test_n"):
            self.line(test_line(s))
        if e.error:
            self.line(f"error: {e.error}")


def test_line(s: dict) -> str:
    """summary.json's test_* figures in one line (best checkpoint, thresholds chosen on val)."""
    ci = s.get("test_auroc_ci")
    auroc = fmt(s.get("test_auroc")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    acc = f", accuracy {fmt(s.get('test_acc'))}" if s.get("test_acc") is not None else ""
    return (f"test split ({s.get('test_n')} images, best checkpoint): AUROC {auroc}{acc}, sensitivity "
            f"{fmt(s.get('test_sensitivity'), '.3f')}, specificity {fmt(s.get('test_specificity'), '.3f')} "
            f"{decision_words(s)}; details in eval_test.md")


def decision_words(s: dict) -> str:
    """How the test figures' labels were decided: a 3+ class run takes the argmax and applies no threshold."""
    if s.get("test_decision") == "argmax":
        return "for the most probable class (argmax, no threshold)"
    return f"at {s.get('test_thresholds')} thresholds"


def system_summary(e: SystemStats) -> str:
    """An epoch's machine use in words: GPU busy or starved, CPU, memory, loader wait."""
    parts = []
    if e.gpu_util_pct is not None:
        parts.append(f"GPU {e.gpu_util_pct:.0f}% busy, {fmt(e.gpu_mem_used_gib, '.1f')}/"
                     f"{fmt(e.gpu_mem_total_gib, '.1f')} GiB")
    parts.append(f"CPU {fmt(e.cpu_pct, '.0f')}%, RSS {fmt(e.rss_gib, '.1f')} GiB")
    parts.append(f"loader wait {100 * e.loader_wait_frac:.0f}% of {1000 * e.step_s:.0f} ms/step")
    text = ", ".join(parts)
    if e.starved:
        text += (" (GPU starved: " if e.on_gpu else " (input-bound: ") + "raise --num_workers or cache the data)"
    return text
