"""Point 7 of issue 11: a checkpoint that does not fit is one error line; the previous
checkpoint stays valid and no temp file is left behind."""
from __future__ import annotations

import shutil

import torch

from core.runs import checkpoint as ckpt_mod
from core.training.trainer import Trainer
from core.events import CheckpointSaved
from core.config.resolve import resolve_config


def test_checkpoint_without_space_fails_cleanly_and_keeps_the_previous(tiny_flags, monkeypatch, one_torch_thread):
    real = shutil.disk_usage
    saved = []

    def fake_usage(path):
        usage = real(path)
        return usage._replace(free=1024) if any(s.endswith("last.pt") for s in saved) else usage

    monkeypatch.setattr(ckpt_mod.shutil, "disk_usage", fake_usage)

    def on_event(e):
        if isinstance(e, CheckpointSaved):
            saved.append(e.path)

    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 2, "checkpoint_minutes": 0}, vram_gib=None),
                      on_event=on_event)
    summary = trainer.fit()
    assert summary["status"] == "failed"
    assert "MiB free" in summary["error"] and "previous checkpoint is kept" in summary["error"]
    assert "\n" not in summary["error"]
    last = trainer.run_dir / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True, map_location="cpu")
    assert state["position"]["epoch"] == 1  # epoch 1's checkpoint, intact
    assert not [p for p in last.parent.iterdir() if ".tmp" in p.name]


def test_real_enospc_mid_write_removes_the_temp_file(small_tmpfs, monkeypatch):
    monkeypatch.setattr(ckpt_mod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 0, 10**12))
    target = small_tmpfs / "last.pt"
    target.write_bytes(b"previous")
    big = {"w": torch.zeros(2 * 2**20 // 4 + 1000)}  # a bit over the 2 MiB disk
    try:
        ckpt_mod.save_atomic(big, target)
        raise AssertionError("expected CheckpointSpaceError")
    except ckpt_mod.CheckpointSpaceError as err:
        assert "writing to" in str(err) and "previous checkpoint is kept" in str(err)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in small_tmpfs.iterdir()] == ["last.pt"]
