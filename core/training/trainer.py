"""The training loop: `Trainer(config, on_event, control).fit()`.

Blocking; faces run it in a worker thread (TUI) or directly (CLI). It emits events from
core/events.py, obeys a Control (stop / pause / save now), and owns the run folder.
"""
from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from core.runs import resume
from core.runs import folder as runs
from core.augment import BatchStrategy, build_strategy
from core.runs.checkpoint import capture_rng, restore_rng, save_atomic
from core.config import ResolvedConfig, TrainConfig, dump_config_yaml
from core.data import DatasetBundle, load_dataset
from core.training.distributed import DistContext, shard_batches, shard_sizes, val_shard
from core.training.divergence import DivergenceGuard, divergence_advice
from core.training.early_stopping import EarlyStopping
from core.events import (
    CheckpointSaved,
    Control,
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
from core.hardware.host import usable_cores
from core.runs.lock import RunLock
from core.training.loader import EpochBatchSampler, Normalizer, TableDataset, close_loader, epoch_batches, make_loader
from core.training.losses import build_loss
from core.training.metrics import batch_correct, classification_metrics, unscorable_classes
from core.models.build import (build_model, build_optimizer, check_pretrained_path, model_family, resolve_model_name,
                     supports_grad_checkpointing)
from core.training.fit_monitor import TrainingMonitor
from core.training.oom import is_oom, release_cached_memory
from core.training.precision import autocast_dtype
from core.models.pretrained import ensure_hub_weights, weights_note
from core.training.schedule import apply_lr, lr_factor
from core.hardware.system_stats import SystemMonitor
from core.training.transforms import build_train_transform

FaultHook = Callable[[int, int], None]
"""fault_hook(global_step, micro_batch_size): tests raise an OOM here to exercise recovery."""


SCORING_SKIPPED = {"test_scoring": "skipped: stopped while scoring the test split; the run and its checkpoints "
                                   "are complete, `medcls eval <run>` scores it"}


@dataclass
class Position:
    """Where the loop is: resume restarts exactly here."""

    epoch: int = 0
    """0-based epoch in progress."""
    step_in_epoch: int = 0
    """Optimizer steps already done in this epoch."""
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_correct: float = 0.0
    epoch_seen: int = 0


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
        self.micro_splits = 1
        self.eval_splits = 1
        """Forward-only batches (evaluation, feature caching) are split this many ways after an OOM."""
        self.last_metrics: dict = {}
        self.status = "running"
        self.setup_warnings: list[str] = []
        self.stop_reason = ""
        """Why the loop ended early when early stopping did not say (divergence)."""
        self._lock: Optional[RunLock] = None
        """Held while this trainer may write the run folder (one writer per run)."""
        self._resume_state: Optional[dict] = None
        """--retrain: last.pt's content, read before the slow set-up and dropped once restored."""
        self._last_checkpoint_time = time.monotonic()
        self._train_loader = self._val_loader = None
        """One loader each for the run: persistent workers serve every epoch (closed when fit() ends)."""
        self._started = time.time()
        """Found while setting up, before the run folder exists; logged with the config warnings."""
        self.dist = DistContext.from_env()
        """This process's rank in a torchrun job (world 1 = a plain run); only rank 0 emits and writes."""

    # ------------------------------------------------------------------ events
    def emit(self, event: Event) -> None:
        if not self.dist.is_main:
            return  # rank 0 speaks for the job
        self.on_event(event)
        # live SystemStats samples go to self.on_event directly; the per-epoch one comes through here
        if self.run_dir is not None and isinstance(event, (EpochDone, EarlyStopState, TrainingWarning, SystemStats,
                                                           CheckpointSaved, RunStarted, RunFinished)):
            self._log(event.to_dict())

    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / runs.METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(runs.json_line({"time": time.time(), **record}) + "\n")

    def warn(self, kind: str, message: str, epoch: Optional[int] = None) -> None:
        self.emit(TrainingWarning(kind=kind, message=message, epoch=epoch))

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        import random

        random.seed(cfg.seed)
        self.device = self.dist.device(cfg.device)
        self.dist.init(self.device, cfg.dist_timeout_minutes)
        if self.dist.enabled and "xdomainmix" in (cfg.augmentation or "").split("+"):
            raise ValueError("augmentation: xdomainmix trains its domain head outside the model's forward, "
                             "which DistributedDataParallel does not synchronise; run it in one process")
        if cfg.tensorboard and self.dist.is_main:  # a subscriber to the events, checked before any slow set-up
            from core.training.tensorboard_log import with_tensorboard

            self.on_event = with_tensorboard(self.on_event)
        self.timm_name = resolve_model_name(cfg.model)
        self.family = model_family(self.timm_name)
        # --retrain: last.pt is read and checked before any slow set-up (hub, data scan, model), so a run that
        # cannot resume says why in seconds. It restores every weight: no hub weights needed (or downloaded).
        self._resume_state = self._read_resume_state() if self.resume_dir is not None else None
        resuming = self._resume_state is not None
        load_hub = cfg.pretrained and not cfg.pretrained_path and not resuming
        # Weights before the data work: a missing download or a file that does not fit fails in seconds.
        with self.dist.main_first():  # downloads and the pixel cache are written once, by rank 0
            if load_hub:
                ensure_hub_weights(self.timm_name, progress=lambda d, t, desc: self.on_event(
                    DataProgress(done=d, total=t, description=desc)))
            elif cfg.pretrained_path and not resuming:
                check_pretrained_path(self.timm_name, cfg.pretrained_path, img_size=cfg.img_size)

            self.bundle: DatasetBundle = load_dataset(
                cfg, progress=lambda d, t, desc: self.on_event(DataProgress(done=d, total=t, description=desc)))
        if len(self.bundle.train) == 0 or len(self.bundle.val) == 0:
            raise ValueError(f"dataset '{cfg.dataset}': train ({len(self.bundle.train)}) and val "
                             f"({len(self.bundle.val)}) splits must both contain images")
        self.multi_label = self.bundle.multi_label

        self.model = build_model(self.timm_name, self.bundle.num_classes, cfg.mode, img_size=cfg.img_size,
                                 drop_path_rate=cfg.drop_path_rate or 0.0,
                                 pretrained_path=None if resuming else cfg.pretrained_path, pretrained=load_hub,
                                 grad_checkpointing=cfg.grad_checkpointing)
        if cfg.grad_checkpointing and not supports_grad_checkpointing(self.model):
            self.setup_warnings.append(f"{self.timm_name} does not support gradient checkpointing; running without it")
        use_cuda = self.device.type == "cuda"
        self._convert_sync_bn()
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else (use_cuda and self.family in ("cnn", "convnext")))
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        pcfg = getattr(self.model.backbone, "pretrained_cfg", {}) or {}
        self.normalize = Normalizer(pcfg.get("mean", (0.485, 0.456, 0.406)), pcfg.get("std", (0.229, 0.224, 0.225)),
                                    self.device, self.channels_last)

        self.amp_dtype = autocast_dtype(cfg.mixed_precision, cfg.amp_dtype, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        counts = self.bundle.class_counts("train")
        self.criterion = build_loss(cfg, self.bundle.num_classes, counts, len(self.bundle.train)).to(self.device)
        self.strategy: BatchStrategy = build_strategy(cfg, self.bundle.num_classes, self.bundle.num_domains,
                                                      self.multi_label)
        for module in self.strategy.modules():
            module.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.mode, cfg.lr, cfg.weight_decay, cfg.layer_decay)

        self.transform = build_train_transform(cfg.augmentation, cfg.img_size)
        self.batch_size = int(cfg.batch_size) if cfg.batch_size not in (None, "auto") else 32
        if cfg.batch_size == "auto":
            self._apply_probe()
            cfg = self.cfg
        self.train_ds = TableDataset(self.bundle.train, self.transform, cfg.seed)
        self.val_ds = TableDataset(self.bundle.val, None, cfg.seed)
        self.num_workers = cfg.num_workers if cfg.num_workers is not None else self._default_workers()
        self.cache_features = (cfg.mode == "linear_probe" and self.transform is None
                               and type(self.strategy) is BatchStrategy and cfg.feature_cache)
        n_batches = len(epoch_batches(len(self.train_ds), self.global_batch, cfg.seed, 0, True, self._drop_last()))
        steps = math.ceil(n_batches / cfg.grad_accum_steps)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        self.steps_per_epoch = max(1, steps)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if "xdomainmix" in (cfg.augmentation or "").split("+") and cfg.xdm_warmup_steps >= self.total_steps:
            self.setup_warnings.append(
                f"xdomainmix: the ERM warm-up ({cfg.xdm_warmup_steps} steps) is as long as the whole run "
                f"({self.total_steps} steps), so no feature is ever mixed; set xdm_warmup_steps below "
                f"{self.total_steps} (e.g. {max(1, self.total_steps // 5)})")
        self.warmup_steps = int(round((cfg.warmup_epochs or 0.0) * self.steps_per_epoch))
        monitor, monitor_mode = self._checked_monitor(cfg.monitor or "val_auroc", cfg.monitor_mode or "max")
        self.early = EarlyStopping(monitor=monitor, mode=monitor_mode,
                                   patience=cfg.early_stopping or 0, min_delta=cfg.min_delta,
                                   divergence_threshold=cfg.divergence_threshold)
        self.monitor = TrainingMonitor()
        self.guard = DivergenceGuard(cfg.max_nonfinite_steps, cfg.loss_explosion_factor)
        self.train_model: nn.Module = self.model if self.cache_features else self.dist.wrap(self.model, self.device)
        """What the training step calls: DDP in a torchrun job, compiled with --compile (checkpoints keep
        self.model). A linear probe on cached features wraps its head in _loop instead."""
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

    @property
    def global_batch(self) -> int:
        """Samples per loader step over all ranks: the per-rank batch x the number of processes."""
        return self.batch_size * self.dist.world_size

    def _convert_sync_bn(self) -> None:
        """--sync_bn: BatchNorm statistics over the global batch (CNNs in a multi-GPU job). torch's
        SyncBatchNorm runs on GPUs only, so elsewhere it is a warning and plain BatchNorm."""
        if not self.cfg.sync_bn or not self.dist.enabled:
            if self.cfg.sync_bn:
                self.setup_warnings.append("sync_bn: a single process has nothing to synchronise; plain BatchNorm")
            return
        if self.device.type != "cuda":
            self.setup_warnings.append(f"sync_bn: torch's SyncBatchNorm needs CUDA devices (this job runs on "
                                       f"{self.device.type}); each rank keeps its own BatchNorm statistics")
            return
        self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def _checked_monitor(self, monitor: str, mode: str) -> tuple[str, str]:
        """Name the classes the val split cannot score (no positives or no negatives: no AUROC, left out
        of the macro); when none can be scored, an AUROC monitor would be NaN at epoch 1, so val_loss is
        monitored instead, with a warning."""
        excluded = unscorable_classes(self.bundle.classes, self.bundle.class_counts("val"), len(self.bundle.val),
                                      self.multi_label)
        if not excluded:
            return monitor, mode
        listed = "; ".join(f"'{name}': {why}" for name, why in excluded.items())
        self.setup_warnings.append(f"val split: no AUROC for {len(excluded)} of {self.bundle.num_classes} "
                                   f"classes ({listed}); val_auroc averages the others")
        if len(excluded) == self.bundle.num_classes and monitor == "val_auroc":
            self.setup_warnings.append("val split: no class can be scored, so val_auroc is undefined; "
                                       "monitoring val_loss instead (fix the split or set --monitor)")
            return "val_loss", "min"
        return monitor, mode

    def _default_workers(self) -> int:
        """Loader processes: none when the pixels are already in an array (the synthetic set, the memmap
        cache) and either nothing is computed per image or the CPU trains (workers would take its cores);
        else one per usable core but one (left to the loop), at most 8."""
        from core.data.base import in_memory

        if in_memory(self.bundle.train) and (self.transform is None or self.device.type != "cuda"):
            return 0
        return max(0, min(8, usable_cores() - 1))

    def _drop_last(self) -> bool:
        # BatchNorm cannot train on a batch of one; drop a ragged last batch when the split is large enough.
        return len(self.bundle.train) > self.global_batch

    def _apply_probe(self) -> None:
        """--batch_size auto: the measured probe's batch, and its accumulation (to reach the tips'
        effective batch) unless the user chose --grad_accum_steps."""
        from core.hardware.advisor import probe_batch_size

        result = probe_batch_size(self.cfg, model=self.model, device=self.device)
        self.batch_size = int(result.recommended_batch)
        accum = self.cfg.grad_accum_steps
        if self.resolved.sources.get("grad_accum_steps", "default") == "default":
            accum = max(1, int(result.grad_accum_steps))
        self.batch_size, accum = self.dist.broadcast_object((self.batch_size, accum))  # one batch for all ranks
        # the run folder's config.yaml records what ran, so --retrain resumes with the same batches
        self.cfg = self.cfg.model_copy(update={"batch_size": self.batch_size, "grad_accum_steps": accum})
        self.resolved.config = self.cfg
        self.setup_warnings.append(f"batch_size auto: measured batch {self.batch_size} x {accum} "
                                   f"accumulation (max safe {result.max_safe_batch})")

    # ------------------------------------------------------------------ run folder
    def _open_run_dir(self) -> None:
        cfg = self.cfg
        if self.resume_dir is not None:
            self._open_resume_dir()
            return
        if self.dist.is_main:  # rank 0 names, creates and locks the folder; the others learn its path
            name = cfg.run_name or runs.default_run_name(cfg.model, cfg.dataset, cfg.mode)
            self.run_dir = runs.new_run_dir(cfg.output_dir, name)
            self._lock = RunLock(self.run_dir).acquire()
            meta = {"name": self.run_dir.name, "group": "custom",
                    "description": f"resolved config of run {self.run_dir.name}"}
            (self.run_dir / runs.CONFIG_FILE).write_text(dump_config_yaml(cfg, meta), encoding="utf-8")
        self.run_dir = Path(self.dist.broadcast_object(str(self.run_dir)))

    def _read_resume_state(self) -> dict:
        """last.pt's content if this job can resume from it, else ResumeError (nothing is written)."""
        state = resume.load_resume_state(self.resume_dir)
        trained_on = int(state.get("world_size", 1))
        if trained_on != self.dist.world_size:
            raise resume.ResumeError(
                f"{self.resume_dir}: trained by {trained_on} process(es), resumed by {self.dist.world_size}; the "
                f"epoch's batches and position depend on it. Resume with the same count (--gpus {trained_on}, "
                f"or torchrun --nproc_per_node {trained_on})" if trained_on > 1 else
                f"{self.resume_dir}: trained in one process, resumed by {self.dist.world_size}; the epoch's "
                "batches and position depend on it. Resume it without --gpus / torchrun")
        return state

    def _open_resume_dir(self) -> None:
        """Lock, then restore the last.pt read in _setup; run_dir is set (so anything is written) only once it fits."""
        if self.dist.is_main:
            self._lock = RunLock(self.resume_dir).acquire()
        state, self._resume_state = self._resume_state, None  # read in _setup; dropped here once restored
        resume.check_classes(self.resume_dir, state, self.bundle.classes)
        try:
            self._restore(state)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise resume.model_mismatch(self.resume_dir, self.cfg.model, err) from None
        self.run_dir = self.resume_dir
        if self.dist.is_main:
            resume.clean_stale_tmp(self.run_dir)
            if resume.restore_best_from_last(self.run_dir, state):
                self.warn("resume", f"best.pt was missing or older than last.pt (a kill between the two at the end "
                                    f"of epoch {self.pos.epoch}); written again from last.pt, which holds that epoch")
        self._log({"event": "Resumed", "global_step": self.pos.global_step, "epoch": self.pos.epoch,
                   "step_in_epoch": self.pos.step_in_epoch})

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def write_abort_summary(self) -> None:
        """Second interrupt: record that the run was aborted mid-step (no checkpoint), then unlock.

        Called from the main thread while the training thread may still be inside torch; it only
        writes summary.json (atomically) so `medcls runs` says what happened.
        """
        if self.run_dir is None or not self.dist.is_main:
            return
        if self.status in ("finished", "early_stopped"):  # training and its checkpoints were done: only scoring
            summary = {**self._summary(time.time() - self._started, None), **SCORING_SKIPPED}
            runs.write_json_atomic(self.run_dir / runs.SUMMARY_FILE, summary)
            self._release_lock()
            return
        summary = self._summary(time.time() - self._started, "aborted by a second interrupt: no checkpoint "
                                "of the current step (resume continues from the last saved one)")
        summary["status"] = "aborted"
        runs.write_json_atomic(self.run_dir / runs.SUMMARY_FILE, summary)
        self._release_lock()

    def _periodic_checkpoint_due(self) -> bool:
        """--checkpoint_every N steps, else every --checkpoint_minutes: bounds what a kill loses."""
        if self.pos.step_in_epoch >= self.steps_per_epoch:
            return False  # the epoch-end checkpoint follows right away
        every = self.cfg.checkpoint_every
        if every:
            return self.pos.global_step % every == 0
        minutes = self.cfg.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self._last_checkpoint_time >= minutes * 60

    def _write_skipped(self) -> None:
        if self.bundle.skipped and self.dist.is_main:
            lines = [f"{path}\t{reason}" for path, reason in self.bundle.skipped]
            (self.run_dir / runs.SKIPPED_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
            self.warn("data", f"{len(self.bundle.skipped)} image(s) skipped (unreadable); list in {runs.SKIPPED_FILE}")

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"global_step": self.pos.global_step, "total_steps": self.total_steps,
                          "warmup_steps": self.warmup_steps},
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "strategy_modules": [m.state_dict() for m in self.strategy.modules()],
            "early_stopping": self.early.state_dict(),
            "divergence": self.guard.state_dict(),
            "position": vars(self.pos).copy(),
            "micro_splits": self.micro_splits,
            "monitor": {"train_losses": self.monitor.train_losses, "val_losses": self.monitor.val_losses,
                        "gaps": self.monitor.gaps},
            "last_metrics": self.last_metrics,
            "rng": capture_rng(),
            "classes": self.bundle.classes,
            "world_size": self.dist.world_size,
        }

    def _weights_finite(self) -> bool:
        """All weights and buffers finite (one host read); checked before any checkpoint is written."""
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point() and t.numel()]
        tensors += [p for m in self.strategy.modules() for p in m.parameters()]
        if not tensors:
            return True
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def save_checkpoint(self, name: str, reason: str) -> Optional[Path]:
        """Atomic write of the full state; refused (None, with a warning) when a weight is not finite,
        so last.pt / best.pt always keep the last finite weights."""
        if not self.dist.is_main:
            return None  # the ranks hold the same weights: rank 0 writes them
        path = self.run_dir / runs.CHECKPOINT_DIR / name
        if not self._weights_finite():
            self.warn("nonfinite", f"not saving {name}: the model has non-finite weights; the previous "
                                   f"{name} (if any) is kept", epoch=self.pos.epoch + 1)
            return None
        save_atomic(self._state(), path)
        if name == "last.pt":
            self._last_checkpoint_time = time.monotonic()
        self.emit(CheckpointSaved(path=str(path), reason=reason, epoch=self.pos.epoch, global_step=self.pos.global_step))
        return path

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        for module, sd in zip(self.strategy.modules(), state["strategy_modules"]):
            module.load_state_dict(sd)
        self.early.load_state_dict(state["early_stopping"])
        self.guard.load_state_dict(state.get("divergence", {}))
        self.pos = Position(**state["position"])
        self.micro_splits = int(state["micro_splits"])
        mon = state["monitor"]
        self.monitor.train_losses, self.monitor.val_losses, self.monitor.gaps = (
            list(mon["train_losses"]), list(mon["val_losses"]), list(mon["gaps"]))
        self.last_metrics = state.get("last_metrics", {})
        self._rng_state = state["rng"]

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _train_step(self, micro_batches: list, model_fn: nn.Module) -> tuple[float, float, int, bool]:
        """One optimizer step over the accumulated loader batches; returns (loss sum, correct, seen,
        finite). A non-finite step was skipped (see `_accumulate`)."""
        n_total = sum(int(b[1].shape[0]) for b in micro_batches)
        while True:
            try:
                return self._accumulate(micro_batches, model_fn, n_total)
            except Exception as err:  # noqa: BLE001 - only OOM is handled, everything else re-raised
                if not is_oom(err):
                    raise
                if self.dist.enabled:  # a re-split on one rank would desynchronise the others' collectives
                    raise RuntimeError(f"out of memory on rank {self.dist.rank} at per-rank batch {self.batch_size}: "
                                       "distributed runs do not re-split the batch; lower --batch_size (per GPU) "
                                       "or raise --grad_accum_steps") from err
                largest = max(int(b[1].shape[0]) for b in micro_batches)
                chunk = math.ceil(largest / self.micro_splits)
                if chunk <= 1:
                    raise RuntimeError(
                        "CUDA out of memory even at micro-batch 1. Try --grad_checkpointing, a lower --img_size, "
                        "--mode linear_probe or a smaller model (see `medcls advise`)") from err
            # outside the except block, so the failed step's frames no longer hold its activations
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():  # an OOM inside scaler.step leaves it marked "unscaled"
                state = self.scaler.state_dict()
                self.scaler = torch.amp.GradScaler(self.device.type)
                self.scaler.load_state_dict(state)
            self.micro_splits *= 2
            self._release_cached_memory()
            new_chunk = math.ceil(largest / self.micro_splits)
            self.warn("oom", f"out of memory at micro-batch {chunk}: retrying with micro-batch {new_chunk} "
                             f"x {self.micro_splits * self.cfg.grad_accum_steps} accumulation "
                             f"(same effective batch {self.batch_size * self.cfg.grad_accum_steps})",
                      epoch=self.pos.epoch + 1)

    def _accumulate(self, micro_batches, model_fn, n_total) -> tuple[float, float, int, bool]:
        """Forward/backward over the micro-batches, then the optimizer step only if the loss and the
        gradients are finite. Losses, accuracy and the gradient check stay on the device and are read
        in one host sync per optimizer step. Returns (loss sum, correct, seen, finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.strategy.begin_step()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        for i, (images, targets, domains) in enumerate(micro_batches):
            for x, y, d in zip(images.tensor_split(self.micro_splits), targets.tensor_split(self.micro_splits),
                               domains.tensor_split(self.micro_splits)):
                if y.shape[0] == 0:
                    continue
                if self.fault_hook is not None:
                    self.fault_hook(self.pos.global_step, int(y.shape[0]))
                x = x if self.cache_features else self.normalize(x)
                y = y.to(self.device, non_blocking=True)
                d = d.to(self.device, non_blocking=True)
                with self._autocast(), self._grad_sync(model_fn, last=i == len(micro_batches) - 1):
                    loss, logits = self.strategy.training_loss(model_fn, self.criterion, x, y, d, self.pos.global_step)
                weight = y.shape[0] / n_total
                self.scaler.scale(loss * weight).backward()
                loss_sum += loss.detach().float() * y.shape[0]
                hits = batch_correct(logits.detach(), y, self.multi_label)
                if hits is not None:
                    correct += hits
                seen += int(y.shape[0])
        # With fp16 the GradScaler checks the (scaled) gradients itself and skips an overflowing step;
        # otherwise a non-finite gradient norm (any NaN/inf element) means the step must not be taken.
        grad_check = torch.zeros((), device=self.device) if self.scaler.is_enabled() else self._grad_norm_sum()
        # summed over ranks: every rank logs the global loss and takes (or skips) the step together
        stats = torch.stack([loss_sum, correct.float(), grad_check.float(), loss_sum.new_tensor(float(seen))])
        loss_total, correct_total, grad_total, seen_total = self.dist.all_reduce(stats).tolist()
        seen = int(seen_total)
        finite = math.isfinite(loss_total) and math.isfinite(grad_total)
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
            with self._autocast():
                self.strategy.after_optimizer_step(model_fn)
        else:
            self.optimizer.zero_grad(set_to_none=True)  # the step is skipped: weights and optimizer state unchanged
        return loss_total, correct_total, seen, finite

    @staticmethod
    def _grad_sync(model_fn: nn.Module, last: bool):
        """DDP all-reduces gradients in the backward of a forward run outside no_sync(): with gradient
        accumulation only the last micro-batch's (the sum is the same, the traffic 1/accum)."""
        no_sync = getattr(model_fn, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

    def _grad_norm_sum(self) -> torch.Tensor:
        """Sum of per-tensor gradient norms: finite exactly when every gradient element is (a device tensor)."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.stack(torch._foreach_norm(grads)).float().sum()

    def _forward_split_on_oom(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """A forward-only pass (evaluation, feature caching) that survives an out-of-memory error:
        the batch is split in more pieces, a warning logged, and the run goes on. The split is kept
        for the rest of the run, as the training micro-batch is."""
        while True:
            try:
                outputs = []
                for piece in x.tensor_split(min(self.eval_splits, max(1, x.shape[0]))):
                    if self.eval_fault_hook is not None:
                        self.eval_fault_hook(self.pos.global_step, int(piece.shape[0]))
                    with self._autocast():
                        outputs.append(forward(piece))
                return torch.cat(outputs)
            except Exception as err:  # noqa: BLE001 - only OOM is handled, everything else re-raised
                if not is_oom(err):
                    raise
                piece = math.ceil(x.shape[0] / self.eval_splits)
                if piece <= 1:
                    raise RuntimeError("CUDA out of memory in a forward pass (evaluation) even at batch 1. Try a "
                                       "lower --img_size or a smaller model (see `medcls advise`)") from err
            outputs = []  # outside the except block: the failed pass's frames and outputs are released
            self._release_cached_memory()
            self.eval_splits *= 2
            self.warn("oom", f"out of memory evaluating batches of {piece}: evaluating in batches of "
                             f"{math.ceil(x.shape[0] / self.eval_splits)} (training is unchanged)",
                      epoch=self.pos.epoch + 1)

    def _release_cached_memory(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.no_grad()
    def evaluate(self, dataset: TableDataset, cached: Optional[tuple] = None) -> dict:
        self.model.eval()
        all_logits, all_targets = [], []
        loss_sum, n = 0.0, 0
        if cached is not None:
            feats, targets = cached
            batches = [(feats[i:i + 1024], targets[i:i + 1024]) for i in range(0, len(feats), 1024)]
        else:  # in a torchrun job each rank scores its contiguous shard; gathered below
            batches = ((x, y) for x, y, _ in self._eval_loader(dataset))
        forward = self.model.head if cached is not None else (lambda images: self.model(self.normalize(images)))
        for x, y in batches:
            logits = self._forward_split_on_oom(forward, x)
            y = y.to(self.device)
            loss = self.criterion(logits.float(), y)
            loss_sum += float(loss) * y.shape[0]
            n += y.shape[0]
            all_logits.append(logits.float().cpu())
            all_targets.append(y.cpu())
        logits, targets = self._gather_predictions(all_logits, all_targets, len(dataset), cached is not None)
        metrics = classification_metrics(logits, targets, self.bundle.classes, self.multi_label)
        if cached is None:
            loss_sum, n = self.dist.all_reduce(torch.tensor([loss_sum, float(n)], dtype=torch.float64,
                                                            device=self.dist.comm_device(self.device))).tolist()
        metrics["val_loss"] = loss_sum / max(1, n)
        self.model.train()
        return metrics

    def _eval_loader(self, dataset: TableDataset):
        """The val split's loader is kept for the run (persistent workers); other splits get a one-pass one.
        In a torchrun job it reads this rank's contiguous shard of the split."""
        if dataset is self.val_ds and self._val_loader is not None:
            return self._val_loader
        shard = val_shard(len(dataset), self.dist.rank, self.dist.world_size)
        idx = [shard[b].tolist() for b in epoch_batches(len(shard), self.batch_size, 0, 0, shuffle=False,
                                                        drop_last=False)]
        keep = dataset is self.val_ds
        loader = make_loader(dataset, EpochBatchSampler(0, idx) if keep else idx, self.num_workers,
                             self.device.type == "cuda", persistent=keep)
        if keep:
            self._val_loader = loader
        return loader

    def _gather_predictions(self, all_logits: list, all_targets: list, n: int, whole: bool):
        """Every rank's validation logits and targets, in the split's order (the padding of uneven shards
        dropped), so AUROC is the one a single process computes. `whole`: each rank scored the whole split."""
        num_classes = self.bundle.num_classes
        logits = torch.cat(all_logits) if all_logits else torch.zeros((0, num_classes))
        if all_targets:
            targets = torch.cat(all_targets)
        else:  # an empty shard (fewer val images than ranks)
            targets = torch.zeros((0, num_classes)) if self.multi_label else torch.zeros((0,), dtype=torch.int64)
        if whole or not self.dist.enabled:
            return logits, targets
        sizes = shard_sizes(n, self.dist.world_size)
        return (self.dist.gather_rows(logits, sizes, self.device),
                self.dist.gather_rows(targets, sizes, self.device))

    @torch.no_grad()
    def _extract_features(self, dataset: TableDataset, desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear probe without augmentation: the frozen backbone's pooled features, computed once."""
        self.model.eval()
        idx = epoch_batches(len(dataset), max(self.batch_size, 64), 0, 0, shuffle=False, drop_last=False)
        feats, targets, domains = [], [], []
        done = 0
        backbone = lambda images: self.model.pool(self.model.features(self.normalize(images)))  # noqa: E731
        for x, y, d in make_loader(dataset, idx, self.num_workers, self.device.type == "cuda"):
            vec = self._forward_split_on_oom(backbone, x)
            feats.append(vec.float())
            targets.append(y.to(self.device))
            domains.append(d)
            done += len(y)
            self.on_event(DataProgress(done=done, total=len(dataset), description=desc))
        self.model.train()
        return torch.cat(feats), torch.cat(targets), torch.cat(domains)

    def _probe_features(self, dataset: TableDataset, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A split's frozen-backbone features: read from the disk cache when an earlier run (or epoch)
        with the same model, weights, pixels and size made them, else computed once and stored."""
        with self.dist.main_first():  # rank 0 computes and stores them; the others read its file
            return self._probe_features_cached(dataset, split)

    def _probe_features_cached(self, dataset: TableDataset, split: str):
        from core.models.feature_cache import FeatureCache, FeatureKey, feature_dir, pixels_digest, weights_digest

        cfg = self.cfg
        cache = FeatureCache(feature_dir(cfg.data_dir, cfg.cache_dir, cfg.output_dir))
        if getattr(self, "_weights_digest", None) is None:
            self._weights_digest = weights_digest(self.model.backbone)
        key = FeatureKey(model=self.timm_name, weights=self._weights_digest, img_size=int(cfg.img_size or 0),
                         amp_dtype=str(self.amp_dtype), pixels=pixels_digest(dataset.table))
        feats = cache.load(key, len(dataset))
        if feats is not None:
            table = dataset.table
            targets = torch.as_tensor(np.asarray(table.targets),
                                      dtype=torch.float32 if dataset.multi_label_targets else torch.int64)
            self.on_event(DataProgress(done=len(dataset), total=len(dataset),
                                       description=f"{split} features read from the feature cache"))
            self._log({"event": "FeatureCache", "split": split, "hit": True, "path": str(cache.path(key))})
            return feats.to(self.device), targets.to(self.device), torch.as_tensor(table.domains, dtype=torch.int64)
        feats, targets, domains = self._extract_features(dataset, f"caching {split} features (frozen backbone)")
        try:
            path = str(cache.save(key, feats))
        except OSError as err:
            path = None
            self.warn("data", f"feature cache: could not write to {cache.directory} ({err}); "
                              "features are kept in memory for this run only")
        self._log({"event": "FeatureCache", "split": split, "hit": False, "path": path})
        return feats, targets, domains

    # ------------------------------------------------------------------ main loop
    def fit(self) -> dict:
        """Train to the end (or stop/early stop); returns summary.json's content."""
        start = time.time()
        error: Optional[str] = None
        failure: Optional[BaseException] = None
        summary: dict = {}
        try:
            self._setup()
            self._open_run_dir()
            resumed = self.resume_dir is not None
            self._write_skipped()
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
                resumed=resumed, notes=notes))
            self._loop(start)
            self._score_test_split()
        except Exception as err:  # noqa: BLE001 - a failed run still gets a summary
            self.status = "failed"
            failure = err
            error = f"{type(err).__name__}: {err}"
            if not self.dist.is_main:
                import sys

                print(f"rank {self.dist.rank}: {error}", file=sys.stderr, flush=True)
            elif self.run_dir is not None:
                with contextlib.suppress(OSError):  # a full disk must not hide the original error
                    (self.run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
                with contextlib.suppress(OSError):
                    self.warn("error", error)
        finally:
            try:
                if self.run_dir is not None:
                    summary = runs.strict_json(self._summary(time.time() - start, error))  # null, never NaN
                with contextlib.suppress(OSError):
                    if summary and self.dist.is_main:
                        runs.write_json_atomic(self.run_dir / runs.SUMMARY_FILE, summary)
                with contextlib.suppress(OSError):
                    self.emit(RunFinished(status=self.status, run_dir=str(self.run_dir or ""), summary=summary,
                                          error=error))
            finally:
                if getattr(self, "sysmon", None) is not None:
                    self.sysmon.close()
                for loader in (self._train_loader, self._val_loader):
                    close_loader(loader)
                self._train_loader = self._val_loader = None
                self._release_lock()
                self.dist.shutdown()
                self.control.finished.set()
        if failure is not None and self.run_dir is None:
            raise failure  # nothing was written: bad data/config surfaces as the original error
        return summary

    def _loop(self, start: float) -> None:
        cfg = self.cfg
        self.model.train()
        model_fn: nn.Module = self.train_model
        cached_train = cached_val = None
        if self.cache_features:
            f, t, d = self._probe_features(self.train_ds, "train")
            cached_train = (f, t, d)
            fv, tv, _ = self._probe_features(self.val_ds, "val")
            cached_val = (fv, tv)
            model_fn = self.dist.wrap(_HeadOnly(self.model), self.device)
        if getattr(self, "_rng_state", None) is not None:
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
            skip = self.pos.step_in_epoch * cfg.grad_accum_steps
            remaining = batches[skip:]
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
                steps_left = self.total_steps - self.pos.global_step
                step_time = elapsed / max(1, self.pos.global_step - session_first_step)
                loss = loss_sum / max(1, seen)
                self.emit(StepDone(epoch=epoch + 1, step=self.pos.step_in_epoch, steps_per_epoch=self.steps_per_epoch,
                                   global_step=self.pos.global_step, total_steps=self.total_steps, loss=loss, lr=lr,
                                   images_per_sec=ips, elapsed_s=time.time() - start, eta_s=steps_left * step_time,
                                   gpu_mem_gib=self._gpu_mem_gib()))
                sample = sysmon.step_done(epoch + 1)
                if sample is not None and self.dist.is_main:  # live only: rank 0 speaks for the job
                    self.on_event(sample)
                if self.pos.global_step % cfg.log_every == 0:
                    self._log({"event": "Step", "epoch": epoch + 1, "global_step": self.pos.global_step,
                               "loss": loss, "lr": lr, "images_per_sec": ips, "step_time_s": time.time() - t0})
                if self._check_divergence(loss, finite, epoch):
                    return
                if self.control.take_save_request():
                    self.save_checkpoint("last.pt", "save_now")
                elif self._periodic_checkpoint_due():
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
        cfg = self.cfg
        advice = divergence_advice(cfg.lr, self.amp_dtype is not None, cfg.warmup_epochs or 0.0)
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
        if self.status not in ("finished", "early_stopped") or not self.dist.is_main:
            return
        from core.evaluation.scoring import ScoringCancelled, score_test_after_training

        try:
            self.test_figures = score_test_after_training(self, lambda: self.control.stop_requested)
        except ScoringCancelled:  # quit/SIGTERM/Ctrl-C: the run stays finished with its checkpoints
            self.test_figures = dict(SCORING_SKIPPED)
            self.warn("eval", SCORING_SKIPPED["test_scoring"])
        except Exception as err:  # noqa: BLE001 - the trained run stands even if scoring it fails
            self.test_figures = {"test_error": f"{type(err).__name__}: {err}"}
            self.warn("eval", f"scoring the test split failed: {err}")

    def _summary(self, elapsed: float, error: Optional[str]) -> dict:
        m = self.last_metrics
        summary = {
            "status": self.status,
            "run_name": self.run_dir.name,
            "model": self.cfg.model,
            "timm_model": getattr(self, "timm_name", None),
            "mode": self.cfg.mode,
            "dataset": self.cfg.dataset,
            "epochs_completed": self.pos.epoch,
            "epochs": self.cfg.epochs,
            "global_step": self.pos.global_step,
            "best_epoch": self.early.best_epoch if hasattr(self, "early") else None,
            "monitor": self.early.monitor if hasattr(self, "early") else self.cfg.monitor,
            "best_value": self.early.best_value if hasattr(self, "early") else None,
            "val_loss": m.get("val_loss"),
            "val_auroc": m.get("val_auroc"),
            "val_acc": m.get("val_acc"),
            "val_auroc_per_class": m.get("val_auroc_per_class", {}),
            "val_auroc_excluded": m.get("val_auroc_excluded", {}),
            "train_loss": m.get("train_loss"),
            "batch_size": getattr(self, "batch_size", None),
            "micro_batch": (math.ceil(self.batch_size / self.micro_splits) if hasattr(self, "batch_size") else None),
            "effective_batch": (self.global_batch * self.cfg.grad_accum_steps if hasattr(self, "batch_size") else None),
            "world_size": self.dist.world_size,
            "skipped_images": len(self.bundle.skipped) if hasattr(self, "bundle") else 0,
            "elapsed_s": round(elapsed, 2),
            "stop_reason": self.stop_reason or (self.early.reason if hasattr(self, "early") else ""),
            "nonfinite_steps_skipped": self.guard.skipped_total if hasattr(self, "guard") else 0,
        }
        summary.update(getattr(self, "test_figures", {}))
        if error:
            summary["error"] = error
        return summary
