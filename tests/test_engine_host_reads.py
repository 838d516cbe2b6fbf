"""The training step keeps its loss and accuracy on the device and reads them once per optimizer step.

A host read (`.item()`, `float(t)`, `.tolist()`, `.cpu()` ...) of a CUDA tensor waits for the device
to finish everything queued; one per micro-batch stalls the GPU between kernels. On the CPU there is
no device to wait for, so these tests count the reads the engine code itself makes (calls whose
caller lives in core/) instead, and check the values it reports against the raw per-batch numbers.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch

from core.augment import BatchStrategy
from core.training.trainer import Trainer
from core.events import EpochDone, StepDone
from core.config.resolve import resolve_config

CORE_DIR = str(Path(__file__).resolve().parents[1] / "core")
READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


@contextlib.contextmanager
def count_core_host_reads():
    """Patch torch.Tensor's host-read methods; count the calls made from core/ source files."""
    calls: list[tuple[str, str, int]] = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name, original):
        def counted(self, *args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(CORE_DIR):
                calls.append((name, frame.f_code.co_filename, frame.f_lineno))
            return original(self, *args, **kwargs)
        return counted

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def reads_per_step(flags) -> list[int]:
    """Host reads made by core/ between consecutive StepDone events of the first epoch."""
    marks: list[int] = []
    with count_core_host_reads() as calls:
        def on_event(e):
            if isinstance(e, StepDone) and e.epoch == 1:
                marks.append(len(calls))
        summary = Trainer(resolve_config(flags, vram_gib=None), on_event=on_event).fit()
    assert summary["status"] == "finished"
    return [b - a for a, b in zip(marks, marks[1:])]


@pytest.mark.usefixtures("one_torch_thread")
def test_host_reads_per_step_do_not_grow_with_micro_batches(tiny_flags):
    """Four accumulated micro-batches cost the same reads as one: at most one for the step's stats,
    plus one for the finiteness check of the whole step."""
    base = {**tiny_flags, "epochs": 1, "max_steps_per_epoch": 3, "augmentation": "none"}
    one = reads_per_step({**base, "batch_size": 16, "grad_accum_steps": 1})
    four = reads_per_step({**base, "batch_size": 4, "grad_accum_steps": 4})
    assert len(one) == len(four) == 2
    assert one == four, f"reads per step: {one} with 1 micro-batch, {four} with 4"
    assert max(four) <= 2


class RecordingStrategy(BatchStrategy):
    """Plain ERM that keeps each micro-batch's loss, logits and targets for an independent check."""

    def __init__(self):
        self.seen: list[tuple[float, torch.Tensor, torch.Tensor]] = []

    def training_loss(self, model, criterion, images, targets, domains, step):
        loss, logits = super().training_loss(model, criterion, images, targets, domains, step)
        self.seen.append((loss.detach().double().item(), logits.detach().clone(), targets.clone()))
        return loss, logits


@pytest.mark.usefixtures("one_torch_thread")
def test_step_loss_and_train_accuracy_match_the_micro_batches(tiny_flags, monkeypatch):
    """Folding the sums into device tensors must keep the numbers: the step loss is the image-weighted
    mean of its micro-batch losses, train_acc the share of correct argmaxes over the epoch."""
    recorder = RecordingStrategy()
    monkeypatch.setattr("core.training.components.build_strategy", lambda *a, **k: recorder)
    flags = {**tiny_flags, "epochs": 1, "max_steps_per_epoch": 2, "augmentation": "none",
             "batch_size": 6, "grad_accum_steps": 3}
    events = []
    Trainer(resolve_config(flags, vram_gib=None), on_event=events.append).fit()
    steps = [e for e in events if isinstance(e, StepDone)]
    epoch = next(e for e in events if isinstance(e, EpochDone))
    assert len(recorder.seen) == 6 and len(steps) == 2
    for i, step in enumerate(steps):
        group = recorder.seen[3 * i: 3 * i + 3]
        n = sum(len(y) for _, _, y in group)
        expected = sum(loss * len(y) for loss, _, y in group) / n
        assert step.loss == pytest.approx(expected, rel=1e-5)
    correct = sum(int((logits.argmax(-1) == y).sum()) for _, logits, y in recorder.seen)
    assert epoch.train_acc == pytest.approx(correct / 36)
    assert epoch.train_loss == pytest.approx(sum(s.loss for s in steps) / 2, rel=1e-5)
