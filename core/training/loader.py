"""Torch-side data plumbing: a Dataset over an ImageTable, seeded per-sample augmentation,
deterministic epoch order with a resume offset, and uint8 -> normalised float on the device.

Augmentation is seeded by (seed, epoch, index), so the same sample gets the same pixels whether
or not the run was interrupted, and whatever the number of loader workers. A run keeps one
training DataLoader with persistent workers: its EpochBatchSampler is given each epoch's batches
and hands the workers (epoch, index) pairs, since their copies of the dataset never see a later
`dataset.epoch`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.data.base import ImageTable
from core.training.transforms import Transform


class TableDataset(Dataset):
    def __init__(self, table: ImageTable, transform: Optional[Transform], seed: int):
        self.table = table
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.multi_label_targets = np.asarray(table.targets).ndim == 2

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):
        """`index`, or `(epoch, index)` from an EpochBatchSampler (the epoch seeds the augmentation)."""
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        img = torch.from_numpy(np.ascontiguousarray(self.table.image(index)))[None]  # 1xHxW uint8
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                # mod 2**64: torch's seed range; the same seed as before wherever it fitted (any seed >= 0 fits)
                torch.manual_seed(((self.seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**64)
                img = self.transform(img)
        target = self.table.targets[index]
        target = torch.as_tensor(target, dtype=torch.float32 if self.multi_label_targets else torch.int64)
        return img, target, int(self.table.domains[index])


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool, drop_last: bool) -> list[list[int]]:
    """The epoch's batches as index lists: a pure function of (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def ignore_stop_signals(worker_id: int = 0) -> None:
    """Loader workers ignore Ctrl-C/SIGTERM/SIGHUP sent to the whole process group: the main
    process decides how to stop, and a worker dying on the signal would fail the run instead.
    (Workers still exit when the main process goes away: torch watches the parent.)"""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


class EpochBatchSampler:
    """Batch sampler of a loader that lives for the whole run: `set_epoch(epoch, batches)` before each
    pass (the seeded order from epoch_batches, minus what a resumed epoch already did); yields the
    batches as (epoch, index) pairs."""

    def __init__(self, epoch: int = 0, batches: Optional[list[list[int]]] = None):
        self.set_epoch(epoch, batches or [])

    def set_epoch(self, epoch: int, batches: list[list[int]]) -> None:
        self.epoch, self.batches = epoch, [list(b) for b in batches]

    def __iter__(self):
        epoch = self.epoch
        for batch in self.batches:
            yield [(epoch, i) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(dataset: TableDataset, batches, num_workers: int, pin_memory: bool,
                persistent: bool = False) -> DataLoader:
    """`batches`: a list of index lists (one pass) or an EpochBatchSampler (`persistent`: workers are
    started once and serve every epoch; release them with close_loader)."""
    # An explicit generator keeps the DataLoader from drawing on the global RNG (exact resume).
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(0),
                      worker_init_fn=ignore_stop_signals if num_workers else None,
                      persistent_workers=persistent and num_workers > 0)


def close_loader(loader: Optional[DataLoader]) -> None:
    """Stop a persistent loader's worker processes now (not whenever the loader is collected)."""
    if not isinstance(loader, DataLoader):
        return
    iterator = loader._iterator
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


class Normalizer:
    """uint8 (B,1,H,W) -> float (B,3,H,W) normalised with the model's mean/std, on the device."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.device = device
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        x = x.expand(-1, self.mean.shape[1], -1, -1)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
