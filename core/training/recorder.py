"""The run recorder: the one writer of a run folder (lock, config.yaml, metrics.jsonl, warnings,
skipped images, error.txt, summary.json) and the one speaker to the face (events).

Rank 0 of a job gets a `RunRecorder`; every other rank a `SilentRecorder` that says and writes
nothing, so the loop needs no rank checks to decide who writes.
"""
from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from core.config import TrainConfig, dump_config_yaml
from core.events import (CheckpointSaved, EarlyStopState, EpochDone, Event, RunFinished, RunStarted, SystemStats,
                         TrainingWarning)
from core.runs import folder as runs
from core.runs import resume
from core.runs.lock import RunLock

LOGGED_EVENTS = (EpochDone, EarlyStopState, TrainingWarning, SystemStats, CheckpointSaved, RunStarted, RunFinished)
"""Events that also go to metrics.jsonl (steps are logged every --log_every instead)."""


class RunRecorder:
    """Writes the run folder and forwards events to the face (rank 0, or a plain run)."""

    speaks = True

    def __init__(self, on_event: Callable[[Event], None]):
        self.on_event = on_event
        self.run_dir: Optional[Path] = None
        self._lock: Optional[RunLock] = None

    # ---------------------------------------------------------------- events
    def event(self, event: Event) -> None:
        """To the face, and to metrics.jsonl for the events a run's history keeps."""
        self.on_event(event)
        if self.run_dir is not None and isinstance(event, LOGGED_EVENTS):
            self.log(event.to_dict())

    def live(self, event: Event) -> None:
        """To the face only (live system samples between epochs)."""
        self.on_event(event)

    def log(self, record: dict) -> None:
        with open(self.run_dir / runs.METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(runs.json_line({"time": time.time(), **record}) + "\n")

    # ---------------------------------------------------------------- folder
    def open_new(self, cfg: TrainConfig) -> Optional[Path]:
        """Name, create and lock a new run folder; config.yaml records the config that runs."""
        name = cfg.run_name or runs.default_run_name(cfg.model, cfg.dataset, cfg.mode)
        run_dir = runs.new_run_dir(cfg.output_dir, name)
        self._lock = RunLock(run_dir).acquire()
        meta = {"name": run_dir.name, "group": "custom", "description": f"resolved config of run {run_dir.name}"}
        (run_dir / runs.CONFIG_FILE).write_text(dump_config_yaml(cfg, meta), encoding="utf-8")
        return run_dir

    def lock_for_resume(self, run_dir: Path) -> None:
        self._lock = RunLock(run_dir).acquire()

    def adopt(self, run_dir: Path) -> None:
        """From now on the folder is written (set once a resumed state fitted, or after open_new)."""
        self.run_dir = run_dir

    def tidy_resumed(self, state: dict) -> bool:
        """Stale temporary files gone; best.pt written again from last.pt when a kill left it behind."""
        resume.clean_stale_tmp(self.run_dir)
        return resume.restore_best_from_last(self.run_dir, state)

    def write_skipped(self, skipped: list) -> bool:
        if not skipped:
            return False
        lines = [f"{path}\t{reason}" for path, reason in skipped]
        (self.run_dir / runs.SKIPPED_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return True

    def write_error(self) -> None:
        """The traceback of the exception being handled, next to the summary that names it."""
        if self.run_dir is not None:
            with contextlib.suppress(OSError):  # a full disk must not hide the original error
                (self.run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")

    def write_summary(self, summary: dict) -> None:
        runs.write_json_atomic(self.run_dir / runs.SUMMARY_FILE, summary)

    def checkpoint_path(self, name: str) -> Optional[Path]:
        return self.run_dir / runs.CHECKPOINT_DIR / name

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()


class SilentRecorder(RunRecorder):
    """Non-zero ranks of a torchrun job: rank 0 speaks and writes for the job."""

    speaks = False

    def event(self, event: Event) -> None:
        pass

    def live(self, event: Event) -> None:
        pass

    def log(self, record: dict) -> None:
        pass

    def open_new(self, cfg: TrainConfig) -> Optional[Path]:
        return None  # rank 0's folder arrives by broadcast

    def lock_for_resume(self, run_dir: Path) -> None:
        pass

    def tidy_resumed(self, state: dict) -> bool:
        return False

    def write_skipped(self, skipped: list) -> bool:
        return False

    def write_error(self) -> None:
        pass

    def write_summary(self, summary: dict) -> None:
        pass

    def checkpoint_path(self, name: str) -> Optional[Path]:
        return None  # the ranks hold the same weights: rank 0 writes them
