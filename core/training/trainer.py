"""The training loop: `Trainer(config, on_event, control).fit()`.

Blocking; faces run it in a worker thread (TUI) or directly (CLI). It emits events from
core/events.py and obeys a Control (stop / pause / save now). It is made of parts, each in its own
module: the run's components (components.py), who writes the run folder (recorder.py), what a
checkpoint holds (checkpointing.py), the optimizer step (step.py) and validation (validation.py).
This file is the loop itself, to be read top-down: fit -> _loop -> _end_epoch.
"""
from __future__ import annotations

import contextlib
import random
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from core.config import ResolvedConfig, TrainConfig
from core.events import (CheckpointSaved, Control, EarlyStopState, EpochDone, Event, RunFinished, RunStarted,
                         StatusChanged, StepDone, TrainingWarning)
from core.hardware.system_stats import SystemMonitor
from core.models.build import model_family, resolve_model_name
from core.models.pretrained import weights_note
from core.runs import folder as runs
from core.runs import resume
from core.runs.checkpoint import restore_rng, save_atomic
from core.training.checkpointing import (PeriodicCheckpoints, Position, restore_training_state, training_state,
                                         weights_finite)
from core.training.components import RunComponents, build_components
from core.training.distributed import DistContext, shard_batches
from core.training.divergence import divergence_advice
from core.training.loader import EpochBatchSampler, TableDataset, close_loader, epoch_batches, make_loader
from core.training.oom import is_oom  # noqa: F401 - the old import path core.engine.is_oom
from core.training.recorder import RunRecorder, SilentRecorder
from core.training.schedule import apply_lr, lr_factor
from core.training.step import FaultHook, OptimizerStep
from core.training.summary import SCORING_SKIPPED, run_summary
from core.training.validation import Validator

__all__ = ["Position", "Trainer", "SCORING_SKIPPED"]


class _HeadOnly(nn.Module):
    """Linear probe on cached features: the 'images' are already pooled backbone vectors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, vec):
        return self.model.head(vec)


class Trainer:
    def __init__(self, config: ResolvedConfig | TrainConfig, on_event: Optional[Callable[[Event], None]] = None,
                 control: Optional[Control] = None, resume_dir: Optional[str | Path] = None,
                 fault_hook: Optional[FaultHook] = None, eval_fault_hook: Optional[FaultHook] = None):
        self.resolved = config if isinstance(config, ResolvedConfig) else ResolvedConfig(config=config)
        self.cfg: TrainConfig = self.resolved.config
        self.on_event = on_event or (lambda e: None)
        self.control = control or Control()
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.fault_hook = fault_hook
        self.eval_fault_hook = eval_fault_hook
        self.run_dir: Optional[Path] = None
        self.pos = Position()
        self.last_metrics: dict = {}
        self.test_figures: dict = {}
        self.status = "running"
        self.stop_reason = ""
        """Why the loop ended early when early stopping did not say (divergence)."""
        self._resume_state: Optional[dict] = None
        """--retrain: last.pt's content, read before the slow set-up and dropped once restored."""
        self._rng_state: Optional[dict] = None
        self._train_loader = None
        """One loader for the run: persistent workers serve every epoch (closed when fit() ends)."""
        self._started = time.time()
        self.sysmon: Optional[SystemMonitor] = None
        self.periodic = PeriodicCheckpoints(self.cfg.checkpoint_every, self.cfg.checkpoint_minutes)
        self.dist = DistContext.from_env()
        """This process's rank in a torchrun job (world 1 = a plain run)."""
        self.recorder = RunRecorder(self.on_event) if self.dist.is_main else SilentRecorder(self.on_event)
        """Rank 0 speaks and writes for the job; the other ranks' recorder does nothing."""

    # ------------------------------------------------------------------ events
    def emit(self, event: Event) -> None:
        self.recorder.event(event)

    def warn(self, kind: str, message: str, epoch: Optional[int] = None) -> None:
        self.emit(TrainingWarning(kind=kind, message=message, epoch=epoch))

    def _warn_now(self, kind: str, message: str) -> None:
        self.warn(kind, message, epoch=self.pos.epoch + 1)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.device = self.dist.device(cfg.device)
        self.dist.init(self.device, cfg.dist_timeout_minutes)
        if self.dist.enabled and "xdomainmix" in (cfg.augmentation or "").split("+"):
            raise ValueError("augmentation: xdomainmix trains its domain head outside the model's forward, "
                             "which DistributedDataParallel does not synchronise; run it in one process")
        if cfg.tensorboard and self.recorder.speaks:  # a subscriber to the events, checked before any slow set-up
            from core.training.tensorboard_log import with_tensorboard

            self.recorder.on_event = with_tensorboard(self.recorder.on_event)
        self.timm_name = resolve_model_name(cfg.model)
        self.family = model_family(self.timm_name)
        # --retrain: last.pt is read and checked before any slow set-up (hub, data scan, model), so a run that
        # cannot resume says why in seconds. It restores every weight: no hub weights needed (or downloaded).
        self._resume_state = (resume.load_for_job(self.resume_dir, self.dist.world_size)
                              if self.resume_dir is not None else None)
        parts = build_components(self.resolved, self.timm_name, self.family, self.device, self.dist,
                                 self.on_event, resuming=self._resume_state is not None)
        self._use(parts)

    def _use(self, parts: RunComponents) -> None:
        """Read the components through the trainer (trainer.model, trainer.bundle, ...) and build the
        step and validation parts on them."""
        self.parts = parts
        for name in ("cfg", "bundle", "model", "train_model", "channels_last", "normalize", "amp_dtype", "criterion",
                     "strategy", "optimizer", "transform", "batch_size", "train_ds", "val_ds", "num_workers",
                     "cache_features", "steps_per_epoch", "total_steps", "warmup_steps", "early", "monitor", "guard"):
            setattr(self, name, getattr(parts, name))
        self.multi_label = parts.multi_label
        self.setup_warnings = parts.warnings
        self.stepper = OptimizerStep(parts, self.device, self.dist, self.batch_size, self.cfg.grad_accum_steps,
                                     self._warn_now, self.fault_hook)
        self.validator = Validator(parts, self.device, self.dist, list(self.bundle.classes), self.batch_size,
                                   self._warn_now, lambda e: self.on_event(e), self.recorder.log,
                                   self.eval_fault_hook, lambda: self.pos.global_step)

    @property
    def global_batch(self) -> int:
        """Samples per loader step over all ranks: the per-rank batch x the number of processes."""
        return self.batch_size * self.dist.world_size

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.stepper.scaler  # replaced by the step after an OOM inside scaler.step

    @property
    def micro_splits(self) -> int:
        return self.stepper.micro_splits

    @micro_splits.setter
    def micro_splits(self, value: int) -> None:
        self.stepper.micro_splits = value

    @property
    def eval_splits(self) -> int:
        return self.validator.eval_splits

    def _drop_last(self) -> bool:
        # BatchNorm cannot train on a batch of one; drop a ragged last batch when the split is large enough.
        return len(self.bundle.train) > self.global_batch

    # ------------------------------------------------------------------ run folder
    def _open_run_dir(self) -> None:
        if self.resume_dir is not None:
            self._open_resume_dir()
            return
        made = self.recorder.open_new(self.cfg)  # rank 0 names, creates and locks it; the others learn its path
        self.run_dir = Path(self.dist.broadcast_object(str(made) if made else None))
        self.recorder.adopt(self.run_dir)

    def _open_resume_dir(self) -> None:
        """Lock, then restore the last.pt read in _setup; run_dir is set (so anything is written) only once it fits."""
        self.recorder.lock_for_resume(self.resume_dir)
        state, self._resume_state = self._resume_state, None  # read in _setup; dropped here once restored
        resume.check_classes(self.resume_dir, state, self.bundle.classes)
        try:
            self._rng_state = restore_training_state(self, state)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise resume.model_mismatch(self.resume_dir, self.cfg.model, err) from None
        self.run_dir = self.resume_dir
        self.recorder.adopt(self.run_dir)
        if self.recorder.tidy_resumed(state):
            self.warn("resume", f"best.pt was missing or older than last.pt (a kill between the two at the end "
                                f"of epoch {self.pos.epoch}); written again from last.pt, which holds that epoch")
        self.recorder.log({"event": "Resumed", "global_step": self.pos.global_step, "epoch": self.pos.epoch,
                           "step_in_epoch": self.pos.step_in_epoch})

    def write_abort_summary(self) -> None:
        """Second interrupt: record that the run was aborted mid-step (no checkpoint), then unlock.

        Called from the main thread while the training thread may still be inside torch; it only
        writes summary.json (atomically) so `medcls runs` says what happened.
        """
        if self.recorder.run_dir is None:
            return
        elapsed = time.time() - self._started
        if self.status in ("finished", "early_stopped"):  # training and its checkpoints were done: only scoring
            summary = {**run_summary(self, elapsed, None), **SCORING_SKIPPED}
        else:
            summary = run_summary(self, elapsed, "aborted by a second interrupt: no checkpoint of the current "
                                                 "step (resume continues from the last saved one)")
            summary["status"] = "aborted"
        self.recorder.write_summary(summary)
        self.recorder.release()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str, reason: str) -> Optional[Path]:
        """Atomic write of the full state; refused (None, with a warning) when a weight is not finite,
        so last.pt / best.pt always keep the last finite weights."""
        path = self.recorder.checkpoint_path(name)
        if path is None:
            return None  # the ranks hold the same weights: rank 0 writes them
        if not weights_finite(self.model, self.strategy.modules()):
            self.warn("nonfinite", f"not saving {name}: the model has non-finite weights; the previous "
                                   f"{name} (if any) is kept", epoch=self.pos.epoch + 1)
            return None
        save_atomic(training_state(self), path)
        if name == "last.pt":
            self.periodic.saved()
        self.emit(CheckpointSaved(path=str(path), reason=reason, epoch=self.pos.epoch, global_step=self.pos.global_step))
        return path

    # ------------------------------------------------------------------ the parts, as the loop calls them
    def _train_step(self, micro_batches: list, model_fn: nn.Module) -> tuple[float, float, int, bool]:
        return self.stepper(micro_batches, model_fn, self.pos.global_step)

    def evaluate(self, dataset: TableDataset, cached: Optional[tuple] = None) -> dict:
        return self.validator.evaluate(dataset, cached)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> dict:
        """Train to the end (or stop/early stop); returns summary.json's content."""
        start = time.time()
        error: Optional[str] = None
        failure: Optional[BaseException] = None
        try:
            self._setup()
            self._open_run_dir()
            if self.recorder.write_skipped(self.bundle.skipped):
                self.warn("data", f"{len(self.bundle.skipped)} image(s) skipped (unreadable); list in "
                                  f"{runs.SKIPPED_FILE}")
            notes = list(self.resolved.notes) + list(self.bundle.notes) + list(getattr(self.strategy, "notes", []))
            for w in [*self.resolved.warnings, *self.setup_warnings]:
                self.warn("config", w)
            notes.append(weights_note(self.cfg, self.timm_name))
            self.emit(RunStarted(
                run_dir=str(self.run_dir), run_name=self.run_dir.name, config=self.cfg.model_dump(),
                classes=list(self.bundle.classes), multi_label=self.multi_label, n_train=len(self.bundle.train),
                n_val=len(self.bundle.val), steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                start_epoch=self.pos.epoch, device=str(self.device),
                amp_dtype=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
                resumed=self.resume_dir is not None, notes=notes))
            self._loop(start)
            self._score_test_split()
        except Exception as err:  # noqa: BLE001 - a failed run still gets a summary
            self.status = "failed"
            failure = err
            error = f"{type(err).__name__}: {err}"
            self._report_failure(error)
        finally:
            summary = self._finish(start, error)
        if failure is not None and self.run_dir is None:
            raise failure  # nothing was written: bad data/config surfaces as the original error
        return summary

    def _report_failure(self, error: str) -> None:
        if not self.recorder.speaks:  # rank 0 writes the run's error; the others say theirs on stderr
            print(f"rank {self.dist.rank}: {error}", file=sys.stderr, flush=True)
        elif self.run_dir is not None:
            self.recorder.write_error()
            with contextlib.suppress(OSError):  # a full disk must not hide the original error
                self.warn("error", error)

    def _finish(self, start: float, error: Optional[str]) -> dict:
        """summary.json (null, never NaN), RunFinished, then every resource released whatever happens."""
        summary: dict = {}
        try:
            if self.run_dir is not None:
                summary = runs.strict_json(run_summary(self, time.time() - start, error))
            with contextlib.suppress(OSError):
                if summary:
                    self.recorder.write_summary(summary)
            with contextlib.suppress(OSError):
                self.emit(RunFinished(status=self.status, run_dir=str(self.run_dir or ""), summary=summary,
                                      error=error))
        finally:
            if self.sysmon is not None:
                self.sysmon.close()
            validator = getattr(self, "validator", None)
            for loader in (self._train_loader, validator.val_loader if validator else None):
                close_loader(loader)
            self._train_loader = None
            if validator:
                validator.val_loader = None
            self.recorder.release()
            self.dist.shutdown()
            self.control.finished.set()
        return summary

    def _loop(self, start: float) -> None:
        cfg = self.cfg
        self.model.train()
        model_fn: nn.Module = self.train_model
        cached_train = cached_val = None
        if self.cache_features:
            cached_train = self.validator.probe_features(self.train_ds, "train", cfg, self.timm_name)
            fv, tv, _ = self.validator.probe_features(self.val_ds, "val", cfg, self.timm_name)
            cached_val = (fv, tv)
            model_fn = self.dist.wrap(_HeadOnly(self.model), self.device)
        if self._rng_state is not None:
            restore_rng(self._rng_state)  # last: nothing above may consume RNG after this
        images_done = 0
        session_first_step = self.pos.global_step
        t_loop = time.time()
        sysmon = self.sysmon = SystemMonitor(self.device)
        train_sampler = EpochBatchSampler()
        if cached_train is None:
            self._train_loader = make_loader(self.train_ds, train_sampler, self.num_workers,
                                             self.device.type == "cuda", persistent=True)
        while self.pos.epoch < cfg.epochs:
            epoch = self.pos.epoch
            sysmon.begin_epoch()
            self.train_ds.epoch = epoch
            batches = epoch_batches(len(self.train_ds), self.global_batch, cfg.seed, epoch, True, self._drop_last())
            batches = batches[: self.steps_per_epoch * cfg.grad_accum_steps]
            batches = shard_batches(batches, self.dist.rank, self.dist.world_size)  # this rank's part of each
            remaining = batches[self.pos.step_in_epoch * cfg.grad_accum_steps:]
            if cached_train is not None:
                f, t, d = cached_train
                source = ((f[b], t[b], d[torch.as_tensor(b)]) for b in remaining)
            else:
                train_sampler.set_epoch(epoch, remaining)
                source = iter(self._train_loader)
            group: list = []
            for batch in sysmon.timed(source):
                group.append(batch)
                if len(group) < cfg.grad_accum_steps and self.pos.step_in_epoch * cfg.grad_accum_steps + len(group) < len(batches):
                    continue
                lr = apply_lr(self.optimizer, cfg.lr, lr_factor(self.pos.global_step, self.total_steps,
                                                                self.warmup_steps, cfg.min_lr_ratio))
                t0 = time.time()
                loss_sum, correct, seen, finite = self._train_step(group, model_fn)
                group = []
                self.pos.step_in_epoch += 1
                self.pos.global_step += 1
                if finite:  # a skipped step adds nothing to the running loss
                    self.pos.epoch_loss_sum += loss_sum
                    self.pos.epoch_loss_count += seen
                    self.pos.epoch_correct += correct
                    self.pos.epoch_seen += seen
                images_done += seen
                elapsed = time.time() - t_loop
                ips = images_done / max(elapsed, 1e-9)
                step_time = elapsed / max(1, self.pos.global_step - session_first_step)
                loss = loss_sum / max(1, seen)
                self.emit(StepDone(epoch=epoch + 1, step=self.pos.step_in_epoch, steps_per_epoch=self.steps_per_epoch,
                                   global_step=self.pos.global_step, total_steps=self.total_steps, loss=loss, lr=lr,
                                   images_per_sec=ips, elapsed_s=time.time() - start,
                                   eta_s=(self.total_steps - self.pos.global_step) * step_time,
                                   gpu_mem_gib=self._gpu_mem_gib()))
                sample = sysmon.step_done(epoch + 1)
                if sample is not None:
                    self.recorder.live(sample)
                if self.pos.global_step % cfg.log_every == 0:
                    self.recorder.log({"event": "Step", "epoch": epoch + 1, "global_step": self.pos.global_step,
                                       "loss": loss, "lr": lr, "images_per_sec": ips, "step_time_s": time.time() - t0})
                if self._check_divergence(loss, finite, epoch):
                    return
                if self.control.take_save_request():
                    self.save_checkpoint("last.pt", "save_now")
                elif self.periodic.due(self.pos.global_step, self.pos.step_in_epoch, self.steps_per_epoch):
                    self.save_checkpoint("last.pt", "periodic")
                if self._handle_pause_and_stop():
                    return
                if self.pos.step_in_epoch >= self.steps_per_epoch:
                    break
            self.emit(sysmon.epoch_done(epoch + 1))
            if self._end_epoch(epoch, start, cached_val):
                return
        self.status = "finished" if self.status == "running" else self.status

    def _check_divergence(self, loss: float, finite: bool, epoch: int) -> bool:
        """Count a skipped non-finite step, or stop the run (status diverged) when the guard says it cannot
        recover. No checkpoint is written then: last.pt and best.pt keep the last good epoch."""
        reason = self.guard.observe(loss, finite, self.pos.global_step)
        if reason is None:
            if not finite:
                self.warn("nonfinite", f"training loss or gradient is not finite at step {self.pos.global_step}: "
                                       f"step skipped ({self.guard.consecutive} in a row, stop at "
                                       f"{self.guard.max_nonfinite_steps})", epoch=epoch + 1)
            return False
        advice = divergence_advice(self.cfg.lr, self.amp_dtype is not None, self.cfg.warmup_epochs or 0.0)
        self.stop_reason = f"diverged: {reason}. Change: {advice}"
        self.status = "diverged"
        self.warn("diverged", self.stop_reason, epoch=epoch + 1)
        return True

    def _gpu_mem_gib(self) -> Optional[float]:
        """Peak GPU memory, asked of the allocator once per log interval rather than every step."""
        if self.device.type != "cuda":
            return None
        if self.pos.global_step % self.cfg.log_every == 0 or getattr(self, "_last_gpu_mem", None) is None:
            self._last_gpu_mem = torch.cuda.max_memory_allocated(self.device) / 2**30
        return self._last_gpu_mem

    def _handle_pause_and_stop(self) -> bool:
        """True when the loop must end now (stop requested); waits here while paused."""
        paused, stop = self._agreed_control()
        if paused and not stop:
            self.emit(StatusChanged(status="paused"))
            while paused and not stop:
                self.control.wait_while_paused(0.1)
                paused, stop = self._agreed_control()
            if not stop:
                self.emit(StatusChanged(status="running"))
        if stop:
            self.emit(StatusChanged(status="stopping"))
            self.status = "stopped"
            self.save_checkpoint("last.pt", "stop")
            return True
        return False

    def _agreed_control(self) -> tuple[bool, bool]:
        """(paused, stop): true on every rank when any rank was asked (a signal, the app), so all ranks
        pause and stop at the same step."""
        paused, stop = self.dist.agree([self.control.paused, self.control.stop_requested], self.device)
        if stop:
            self.control.request_stop()
        return paused, stop

    def _end_epoch(self, epoch: int, start: float, cached_val) -> bool:
        """Validate, track best/early stop, checkpoint. True when training must end."""
        cfg = self.cfg
        metrics = self.evaluate(self.val_ds, cached_val)
        train_loss = self.pos.epoch_loss_sum / max(1, self.pos.epoch_loss_count)
        train_acc = (self.pos.epoch_correct / self.pos.epoch_seen
                     if (not self.multi_label and self.pos.epoch_seen) else None)
        self.last_metrics = {**metrics, "train_loss": train_loss, "epoch": epoch + 1}
        lr_now = self.optimizer.param_groups[-1]["lr"]
        self.emit(EpochDone(epoch=epoch + 1, epochs=cfg.epochs, train_loss=train_loss, metrics=metrics, lr=lr_now,
                            elapsed_s=time.time() - start, train_acc=train_acc))
        for kind, message in self.monitor.update(epoch + 1, train_loss, metrics.get("val_loss"), train_acc,
                                                 metrics.get("val_acc"), metrics.get(self.early.monitor),
                                                 self.early.monitor, self.early.mode):
            self.warn(kind, message, epoch=epoch + 1)
        improved = self.early.update(epoch + 1, metrics)
        self.emit(EarlyStopState(monitor=self.early.monitor, mode=self.early.mode,
                                 value=metrics.get(self.early.monitor), best_value=self.early.best_value,
                                 best_epoch=self.early.best_epoch, patience=self.early.patience, wait=self.early.wait,
                                 improved=improved, should_stop=self.early.stopped, reason=self.early.reason))
        self.pos = Position(epoch=epoch + 1, global_step=self.pos.global_step)
        self.guard.end_epoch()
        self.save_checkpoint("last.pt", "epoch")  # first: a kill before best.pt still leaves a run to resume
        if improved:  # (and --retrain rewrites best.pt from that last.pt, resume.restore_best_from_last)
            self.save_checkpoint("best.pt", "best")
        if self.dist.agree([self.early.stopped], self.device)[0]:  # same metrics on every rank; made sure
            self.status = "early_stopped"
            self.warn("early_stop", self.early.reason, epoch=epoch + 1)
            return True
        return self._handle_pause_and_stop()

    def _score_test_split(self) -> None:
        """A finished run scores its best checkpoint on the test split once (never used to pick an epoch)."""
        if self.status not in ("finished", "early_stopped") or not self.recorder.speaks:
            return
        from core.evaluation.scoring import ScoringCancelled, ScoringModel, score_test_after_training
        from core.evaluation.shortcut import ShortcutSettings

        scorer = ScoringModel(model=self.model, normalize=self.normalize, amp_dtype=self.amp_dtype,
                              batch_size=self.batch_size, num_workers=self.num_workers,
                              pin_memory=self.device.type == "cuda")
        try:
            self.test_figures = score_test_after_training(self.run_dir, self.bundle, scorer, self.cfg.seed,
                                                          self.on_event, lambda: self.control.stop_requested,
                                                          ShortcutSettings.from_config(self.cfg))
        except ScoringCancelled:  # quit/SIGTERM/Ctrl-C: the run stays finished with its checkpoints
            self.test_figures = dict(SCORING_SKIPPED)
            self.warn("eval", SCORING_SKIPPED["test_scoring"])
        except Exception as err:  # noqa: BLE001 - the trained run stands even if scoring it fails
            self.test_figures = {"test_error": f"{type(err).__name__}: {err}"}
            self.warn("eval", f"scoring the test split failed: {err}")
        else:
            if self.test_figures.get("test_shortcut_warning"):  # the source, not the finding? (README)
                self.warn("shortcut", self.test_figures["test_shortcut_warning"])
