"""Input pipeline (issue 17.3): one loader per run whose worker processes persist across epochs
without changing the seeded batch order or augmentation; worker count from the usable cores;
channels_last applied by the engine to the model and to every batch."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from core.runs.checkpoint import load_checkpoint
from core.data.base import ArrayTable
from core.training.components import default_workers
from core.training.trainer import Trainer
from core.events import EpochDone, StepDone
from core.hardware.host import usable_cores
from core.training.loader import EpochBatchSampler, TableDataset
from core.config.resolve import resolve_config
from core.training.transforms import standard_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def worker_pids(loader) -> tuple[int, ...]:
    iterator = getattr(loader, "_iterator", None)
    return tuple(sorted(w.pid for w in getattr(iterator, "_workers", [])))


def test_workers_persist_across_epochs_and_train_exactly_like_in_process_loading(tiny_flags):
    flags = {**tiny_flags, "epochs": 3, "max_steps_per_epoch": 2, "augmentation": "standard", "seed": 3}
    seen: dict[str, set] = {"train": set(), "val": set()}
    holder: list[Trainer] = []

    def on_event(e):
        if isinstance(e, StepDone):
            seen["train"].add(worker_pids(holder[0]._train_loader))
        elif isinstance(e, EpochDone):
            seen["val"].add(worker_pids(holder[0].validator.val_loader))

    holder.append(Trainer(resolve_config({**flags, "num_workers": 2}, vram_gib=None), on_event=on_event))
    with_workers = holder[0]
    assert with_workers.fit()["status"] == "finished"
    # the same two processes served every step of all three epochs, and every validation
    assert len(seen["train"]) == 1 and len(next(iter(seen["train"]))) == 2
    assert len(seen["val"]) == 1 and len(next(iter(seen["val"]))) == 2
    assert with_workers._train_loader is None and with_workers.validator.val_loader is None
    for pid in next(iter(seen["train"])) + next(iter(seen["val"])):  # released when fit() returns
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    in_process = Trainer(resolve_config({**flags, "num_workers": 0, "run_name": "in-process"}, vram_gib=None))
    assert in_process.fit()["status"] == "finished"
    # last.pt: the weights after the last epoch (the model object holds best.pt's once the test split is scored)
    a, b = (load_checkpoint(t.run_dir / "checkpoints" / "last.pt")["model"] for t in (with_workers, in_process))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same batches, same per-epoch augmentation


def test_sampler_pairs_carry_the_epoch_into_the_workers_copy_of_the_dataset():
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    table = ArrayTable(images=images, targets=np.zeros(6, dtype=np.int64), domains=np.zeros(6, dtype=np.int64))
    dataset = TableDataset(table, standard_transform(32), seed=1)
    sampler = EpochBatchSampler()
    sampler.set_epoch(2, [[4, 5], [0]])
    assert list(sampler) == [[(2, 4), (2, 5)], [(2, 0)]] and len(sampler) == 2
    dataset.epoch = 0  # what a persistent worker's copy keeps seeing
    from_pair = dataset[(2, 4)][0]
    dataset.epoch = 2
    assert torch.equal(from_pair, dataset[4][0])
    dataset.epoch = 0
    assert not torch.equal(from_pair, dataset[4][0])  # the epoch does change the augmentation


def test_default_workers_follow_the_usable_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(5)), raising=False)
    assert usable_cores() == 5
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    array = ArrayTable(images=np.zeros((1, 4, 4), np.uint8), targets=np.zeros(1, np.int64), domains=np.zeros(1, np.int64))

    def workers(train, transform, device):
        return default_workers(train, transform, device)

    assert workers(object(), None, cpu) == 4  # read from disk per image: workers, whatever the device
    assert workers(array, standard_transform(4), cuda) == 4  # augmentation on the host feeding a GPU
    assert workers(array, standard_transform(4), cpu) == 0  # CPU training: the step needs the cores
    assert workers(array, None, cuda) == 0  # nothing to compute per image
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert workers(array, standard_transform(4), cuda) == 8


def test_channels_last_reaches_the_model_and_every_training_batch(tiny_flags):
    layouts = []
    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 2, "channels_last": True},
                                     vram_gib=None))
    real_setup = trainer._setup

    def setup():
        real_setup()
        trainer.model.register_forward_pre_hook(
            lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))

    trainer._setup = setup
    assert trainer.fit()["status"] == "finished"
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(layouts) >= 2 and all(layouts)
    assert Trainer(resolve_config(tiny_flags, vram_gib=None)).cfg.channels_last is None  # default: CUDA CNNs only
