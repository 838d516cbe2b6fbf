"""Validation: scoring the val split each epoch (sharded over ranks and gathered back in order), the
forward-only passes that survive an OOM, and the linear probe's frozen-backbone features (cached on
disk between runs).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from core.events import DataProgress, Event
from core.training.distributed import shard_sizes, val_shard
from core.training.loader import EpochBatchSampler, TableDataset, epoch_batches, make_loader
from core.training.oom import is_oom, release_cached_memory
from core.training.precision import autocast
from core.training.step import FaultHook, WarnFn
from core.training.val_metrics import classification_metrics


class Validator:
    """Scores datasets with the run's model at the run's precision. `eval_splits` (forward batches are
    cut this many ways after an OOM) is kept for the rest of the run, as the training micro-batch is."""

    def __init__(self, parts, device: torch.device, dist, classes: list[str], batch_size: int, warn: WarnFn,
                 on_event: Callable[[Event], None], log: Callable[[dict], None],
                 fault_hook: Optional[FaultHook] = None, global_step: Callable[[], int] = lambda: 0):
        self.model = parts.model
        self.normalize = parts.normalize
        self.criterion = parts.criterion
        self.amp_dtype = parts.amp_dtype
        self.multi_label = parts.multi_label
        self.num_workers = parts.num_workers
        self.val_ds = parts.val_ds
        self.device = device
        self.dist = dist
        self.classes = classes
        self.batch_size = batch_size
        self.warn = warn
        self.on_event = on_event
        self.log = log
        self.fault_hook = fault_hook
        self.global_step = global_step
        self.eval_splits = 1
        self.val_loader = None
        """The val split's loader, kept for the run (persistent workers); closed by the Trainer."""
        self._weights_digest: Optional[str] = None

    @torch.no_grad()
    def evaluate(self, dataset: TableDataset, cached: Optional[tuple] = None) -> dict:
        self.model.eval()
        all_logits, all_targets = [], []
        loss_sum, n = 0.0, 0
        if cached is not None:
            feats, targets = cached
            batches = [(feats[i:i + 1024], targets[i:i + 1024]) for i in range(0, len(feats), 1024)]
        else:  # in a torchrun job each rank scores its contiguous shard; gathered below
            batches = ((x, y) for x, y, _ in self.loader(dataset))
        forward = self.model.head if cached is not None else (lambda images: self.model(self.normalize(images)))
        for x, y in batches:
            logits = self.forward_split_on_oom(forward, x)
            y = y.to(self.device)
            loss = self.criterion(logits.float(), y)
            loss_sum += float(loss) * y.shape[0]
            n += y.shape[0]
            all_logits.append(logits.float().cpu())
            all_targets.append(y.cpu())
        logits, targets = self.gather(all_logits, all_targets, len(dataset), cached is not None)
        metrics = classification_metrics(logits, targets, self.classes, self.multi_label)
        if cached is None:
            loss_sum, n = self.dist.all_reduce(torch.tensor([loss_sum, float(n)], dtype=torch.float64,
                                                            device=self.dist.comm_device(self.device))).tolist()
        metrics["val_loss"] = loss_sum / max(1, n)
        self.model.train()
        return metrics

    def loader(self, dataset: TableDataset):
        """The val split's loader is kept for the run (persistent workers); other splits get a one-pass one.
        In a torchrun job it reads this rank's contiguous shard of the split."""
        if dataset is self.val_ds and self.val_loader is not None:
            return self.val_loader
        shard = val_shard(len(dataset), self.dist.rank, self.dist.world_size)
        idx = [shard[b].tolist() for b in epoch_batches(len(shard), self.batch_size, 0, 0, shuffle=False,
                                                        drop_last=False)]
        keep = dataset is self.val_ds
        loader = make_loader(dataset, EpochBatchSampler(0, idx) if keep else idx, self.num_workers,
                             self.device.type == "cuda", persistent=keep)
        if keep:
            self.val_loader = loader
        return loader

    def gather(self, all_logits: list, all_targets: list, n: int, whole: bool):
        """Every rank's validation logits and targets, in the split's order (the padding of uneven shards
        dropped), so AUROC is the one a single process computes. `whole`: each rank scored the whole split."""
        num_classes = len(self.classes)
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

    def forward_split_on_oom(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """A forward-only pass (evaluation, feature caching) that survives an out-of-memory error:
        the batch is split in more pieces, a warning logged, and the run goes on."""
        while True:
            try:
                outputs = []
                for piece in x.tensor_split(min(self.eval_splits, max(1, x.shape[0]))):
                    if self.fault_hook is not None:
                        self.fault_hook(self.global_step(), int(piece.shape[0]))
                    with autocast(self.device, self.amp_dtype):
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
            release_cached_memory()
            self.eval_splits *= 2
            self.warn("oom", f"out of memory evaluating batches of {piece}: evaluating in batches of "
                             f"{math.ceil(x.shape[0] / self.eval_splits)} (training is unchanged)")

    @torch.no_grad()
    def extract_features(self, dataset: TableDataset, desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear probe without augmentation: the frozen backbone's pooled features, computed once."""
        self.model.eval()
        idx = epoch_batches(len(dataset), max(self.batch_size, 64), 0, 0, shuffle=False, drop_last=False)
        feats, targets, domains = [], [], []
        done = 0
        backbone = lambda images: self.model.pool(self.model.features(self.normalize(images)))  # noqa: E731
        for x, y, d in make_loader(dataset, idx, self.num_workers, self.device.type == "cuda"):
            vec = self.forward_split_on_oom(backbone, x)
            feats.append(vec.float())
            targets.append(y.to(self.device))
            domains.append(d)
            done += len(y)
            self.on_event(DataProgress(done=done, total=len(dataset), description=desc))
        self.model.train()
        return torch.cat(feats), torch.cat(targets), torch.cat(domains)

    def probe_features(self, dataset: TableDataset, split: str, cfg, timm_name: str):
        """A split's frozen-backbone features: read from the disk cache when an earlier run (or epoch)
        with the same model, weights, pixels and size made them, else computed once and stored."""
        with self.dist.main_first():  # rank 0 computes and stores them; the others read its file
            return self._probe_features_cached(dataset, split, cfg, timm_name)

    def _probe_features_cached(self, dataset: TableDataset, split: str, cfg, timm_name: str):
        from core.models.feature_cache import FeatureCache, FeatureKey, feature_dir, pixels_digest, weights_digest

        cache = FeatureCache(feature_dir(cfg.data_dir, cfg.cache_dir, cfg.output_dir))
        if self._weights_digest is None:
            self._weights_digest = weights_digest(self.model.backbone)
        key = FeatureKey(model=timm_name, weights=self._weights_digest, img_size=int(cfg.img_size or 0),
                         amp_dtype=str(self.amp_dtype), pixels=pixels_digest(dataset.table))
        feats = cache.load(key, len(dataset))
        if feats is not None:
            table = dataset.table
            targets = torch.as_tensor(np.asarray(table.targets),
                                      dtype=torch.float32 if dataset.multi_label_targets else torch.int64)
            self.on_event(DataProgress(done=len(dataset), total=len(dataset),
                                       description=f"{split} features read from the feature cache"))
            self.log({"event": "FeatureCache", "split": split, "hit": True, "path": str(cache.path(key))})
            return feats.to(self.device), targets.to(self.device), torch.as_tensor(table.domains, dtype=torch.int64)
        feats, targets, domains = self.extract_features(dataset, f"caching {split} features (frozen backbone)")
        try:
            path = str(cache.save(key, feats))
        except OSError as err:
            path = None
            self.warn("data", f"feature cache: could not write to {cache.directory} ({err}); "
                              "features are kept in memory for this run only")
        self.log({"event": "FeatureCache", "split": split, "hit": False, "path": path})
        return feats, targets, domains
