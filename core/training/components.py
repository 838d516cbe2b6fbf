"""A run's components, built once: data, model, loss, strategy, optimizer, batch plan, stopping rules.

`build_components` is a function of the resolved config (plus the process's place in a job) that
returns a `RunComponents` dataclass; the Trainer only runs what it is given. It is the slow part of
starting a run (hub weights, data scan, model build, the --batch_size auto probe).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from core.augment import BatchStrategy, build_strategy
from core.config import ResolvedConfig, TrainConfig
from core.data import DatasetBundle, load_dataset
from core.events import DataProgress, Event
from core.hardware.host import usable_cores
from core.models.build import build_model, build_optimizer, check_pretrained_path, supports_grad_checkpointing
from core.models.pretrained import ensure_hub_weights
from core.training.distributed import DistContext
from core.training.divergence import DivergenceGuard
from core.training.early_stopping import EarlyStopping
from core.training.fit_monitor import TrainingMonitor
from core.training.loader import Normalizer, TableDataset, epoch_batches
from core.training.losses import build_loss
from core.training.precision import autocast_dtype
from core.training.transforms import build_train_transform
from core.training.val_metrics import unscorable_classes


@dataclass
class RunComponents:
    """Everything a run trains with. `cfg` is the config that ran (the probe may have set its batch)."""

    cfg: TrainConfig
    bundle: DatasetBundle
    model: nn.Module
    train_model: nn.Module
    """What the training step calls: DDP in a torchrun job, compiled with --compile (checkpoints keep
    `model`). A linear probe on cached features wraps its head in the loop instead."""
    channels_last: bool
    normalize: Normalizer
    amp_dtype: Optional[torch.dtype]
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    strategy: BatchStrategy
    optimizer: torch.optim.Optimizer
    transform: Any
    batch_size: int
    train_ds: TableDataset
    val_ds: TableDataset
    num_workers: int
    cache_features: bool
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    early: EarlyStopping
    monitor: TrainingMonitor
    guard: DivergenceGuard
    warnings: list[str] = field(default_factory=list)
    """Found while building, logged as config warnings once the run folder exists."""

    @property
    def multi_label(self) -> bool:
        return self.bundle.multi_label


def build_components(resolved: ResolvedConfig, timm_name: str, family: str, device: torch.device, dist: DistContext,
                     on_event: Callable[[Event], None], resuming: bool) -> RunComponents:
    """Build a run's parts in the order that fails fastest: weights, data, model, then the rest."""
    cfg = resolved.config
    warnings: list[str] = []

    def progress(done: int, total: int, desc: str) -> None:
        on_event(DataProgress(done=done, total=total, description=desc))

    load_hub = cfg.pretrained and not cfg.pretrained_path and not resuming
    # Weights before the data work: a missing download or a file that does not fit fails in seconds.
    with dist.main_first():  # downloads and the pixel cache are written once, by rank 0
        if load_hub:
            ensure_hub_weights(timm_name, progress=progress)
        elif cfg.pretrained_path and not resuming:
            check_pretrained_path(timm_name, cfg.pretrained_path, img_size=cfg.img_size)
        bundle: DatasetBundle = load_dataset(cfg, progress=progress)
    if len(bundle.train) == 0 or len(bundle.val) == 0:
        raise ValueError(f"dataset '{cfg.dataset}': train ({len(bundle.train)}) and val "
                         f"({len(bundle.val)}) splits must both contain images")

    model = build_model(timm_name, bundle.num_classes, cfg.mode, img_size=cfg.img_size,
                        drop_path_rate=cfg.drop_path_rate or 0.0,
                        pretrained_path=None if resuming else cfg.pretrained_path, pretrained=load_hub,
                        grad_checkpointing=cfg.grad_checkpointing)
    if cfg.grad_checkpointing and not supports_grad_checkpointing(model):
        warnings.append(f"{timm_name} does not support gradient checkpointing; running without it")
    model = convert_sync_bn(model, cfg.sync_bn, dist, device, warnings)
    channels_last = (cfg.channels_last if cfg.channels_last is not None
                     else (device.type == "cuda" and family in ("cnn", "convnext")))
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    pcfg = getattr(model.backbone, "pretrained_cfg", {}) or {}
    normalize = Normalizer(pcfg.get("mean", (0.485, 0.456, 0.406)), pcfg.get("std", (0.229, 0.224, 0.225)),
                           device, channels_last)
    amp_dtype = autocast_dtype(cfg.mixed_precision, cfg.amp_dtype, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    counts = bundle.class_counts("train")
    criterion = build_loss(cfg, bundle.num_classes, counts, len(bundle.train)).to(device)
    strategy: BatchStrategy = build_strategy(cfg, bundle.num_classes, bundle.num_domains, bundle.multi_label)
    for module in strategy.modules():
        module.to(device)
    optimizer = build_optimizer(model, cfg.mode, cfg.lr, cfg.weight_decay, cfg.layer_decay)

    transform = build_train_transform(cfg.augmentation, cfg.img_size)
    batch_size = int(cfg.batch_size) if cfg.batch_size not in (None, "auto") else 32
    if cfg.batch_size == "auto":
        cfg, batch_size = apply_batch_probe(resolved, model, device, dist, warnings)
    train_ds = TableDataset(bundle.train, transform, cfg.seed)
    val_ds = TableDataset(bundle.val, None, cfg.seed)
    num_workers = cfg.num_workers if cfg.num_workers is not None else default_workers(bundle.train, transform, device)
    cache_features = (cfg.mode == "linear_probe" and transform is None
                      and type(strategy) is BatchStrategy and cfg.feature_cache)
    global_batch = batch_size * dist.world_size
    n_batches = len(epoch_batches(len(train_ds), global_batch, cfg.seed, 0, True, len(bundle.train) > global_batch))
    steps = math.ceil(n_batches / cfg.grad_accum_steps)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    steps_per_epoch = max(1, steps)
    total_steps = steps_per_epoch * cfg.epochs
    if "xdomainmix" in (cfg.augmentation or "").split("+") and cfg.xdm_warmup_steps >= total_steps:
        warnings.append(
            f"xdomainmix: the ERM warm-up ({cfg.xdm_warmup_steps} steps) is as long as the whole run "
            f"({total_steps} steps), so no feature is ever mixed; set xdm_warmup_steps below "
            f"{total_steps} (e.g. {max(1, total_steps // 5)})")
    monitor, monitor_mode = checked_monitor(bundle, cfg.monitor or "val_auroc", cfg.monitor_mode or "max", warnings)
    train_model: nn.Module = model if cache_features else dist.wrap(model, device)
    if cfg.compile:
        train_model = torch.compile(train_model)
    return RunComponents(
        cfg=cfg, bundle=bundle, model=model, train_model=train_model, channels_last=channels_last,
        normalize=normalize, amp_dtype=amp_dtype, scaler=scaler, criterion=criterion, strategy=strategy,
        optimizer=optimizer, transform=transform, batch_size=batch_size, train_ds=train_ds, val_ds=val_ds,
        num_workers=num_workers, cache_features=cache_features, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, warmup_steps=int(round((cfg.warmup_epochs or 0.0) * steps_per_epoch)),
        early=EarlyStopping(monitor=monitor, mode=monitor_mode, patience=cfg.early_stopping or 0,
                            min_delta=cfg.min_delta, divergence_threshold=cfg.divergence_threshold),
        monitor=TrainingMonitor(), guard=DivergenceGuard(cfg.max_nonfinite_steps, cfg.loss_explosion_factor),
        warnings=warnings)


def convert_sync_bn(model: nn.Module, sync_bn: bool, dist: DistContext, device: torch.device,
                    warnings: list[str]) -> nn.Module:
    """--sync_bn: BatchNorm statistics over the global batch (CNNs in a multi-GPU job). torch's
    SyncBatchNorm runs on GPUs only, so elsewhere it is a warning and plain BatchNorm."""
    if not sync_bn or not dist.enabled:
        if sync_bn:
            warnings.append("sync_bn: a single process has nothing to synchronise; plain BatchNorm")
        return model
    if device.type != "cuda":
        warnings.append(f"sync_bn: torch's SyncBatchNorm needs CUDA devices (this job runs on "
                        f"{device.type}); each rank keeps its own BatchNorm statistics")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def checked_monitor(bundle: DatasetBundle, monitor: str, mode: str, warnings: list[str]) -> tuple[str, str]:
    """Name the classes the val split cannot score (no positives or no negatives: no AUROC, left out
    of the macro); when none can be scored, an AUROC monitor would be NaN at epoch 1, so val_loss is
    monitored instead, with a warning."""
    excluded = unscorable_classes(bundle.classes, bundle.class_counts("val"), len(bundle.val), bundle.multi_label)
    if not excluded:
        return monitor, mode
    listed = "; ".join(f"'{name}': {why}" for name, why in excluded.items())
    warnings.append(f"val split: no AUROC for {len(excluded)} of {bundle.num_classes} "
                    f"classes ({listed}); val_auroc averages the others")
    if len(excluded) == bundle.num_classes and monitor == "val_auroc":
        warnings.append("val split: no class can be scored, so val_auroc is undefined; "
                        "monitoring val_loss instead (fix the split or set --monitor)")
        return "val_loss", "min"
    return monitor, mode


def default_workers(train_table, transform, device: torch.device) -> int:
    """Loader processes: none when the pixels are already in an array (the synthetic set, the memmap
    cache) and either nothing is computed per image or the CPU trains (workers would take its cores);
    else one per usable core but one (left to the loop), at most 8."""
    from core.data.base import in_memory

    if in_memory(train_table) and (transform is None or device.type != "cuda"):
        return 0
    return max(0, min(8, usable_cores() - 1))


def apply_batch_probe(resolved: ResolvedConfig, model: nn.Module, device: torch.device, dist: DistContext,
                      warnings: list[str]) -> tuple[TrainConfig, int]:
    """--batch_size auto: the measured probe's batch, and its accumulation (to reach the tips'
    effective batch) unless the user chose --grad_accum_steps. The returned config records what ran
    (config.yaml), so --retrain resumes with the same batches."""
    from core.hardware.advisor import probe_batch_size

    cfg = resolved.config
    result = probe_batch_size(cfg, model=model, device=device)
    batch_size = int(result.recommended_batch)
    accum = cfg.grad_accum_steps
    if resolved.sources.get("grad_accum_steps", "default") == "default":
        accum = max(1, int(result.grad_accum_steps))
    batch_size, accum = dist.broadcast_object((batch_size, accum))  # one batch for all ranks
    cfg = cfg.model_copy(update={"batch_size": batch_size, "grad_accum_steps": accum})
    resolved.config = cfg
    warnings.append(f"batch_size auto: measured batch {batch_size} x {accum} "
                    f"accumulation (max safe {result.max_safe_batch})")
    return cfg, batch_size
