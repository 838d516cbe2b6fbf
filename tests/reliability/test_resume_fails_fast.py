"""`--retrain` reads and checks last.pt before the slow set-up (hub weights, data scan, model build).

On a real dataset the scan and the pixel cache take minutes; a run that cannot resume must say why
before them, and must not ask the hub for weights the checkpoint would replace anyway.
"""
from __future__ import annotations

import pytest

import core.training.components as engine_module  # where the run's components are built
from core.training.trainer import Trainer
from core.config.resolve import resolve_config
from core.runs.resume import ResumeError

DAMAGE = {
    "missing": (None, "is missing"),
    "empty": (b"", "is empty"),
    "garbage": (b"PK\x03\x04 not a checkpoint", "corrupt or truncated"),
}


@pytest.fixture
def slow_setup(monkeypatch):
    """Records any call into the hub or the dataset loader (and stops the run there)."""
    reached = []

    def forbidden(name):
        def call(*args, **kwargs):
            reached.append(name)
            raise AssertionError(f"{name} ran before last.pt was checked")
        return call

    monkeypatch.setattr(engine_module, "load_dataset", forbidden("load_dataset"))
    monkeypatch.setattr(engine_module, "ensure_hub_weights", forbidden("ensure_hub_weights"))
    return reached


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_unusable_last_pt_is_refused_before_hub_and_data(tiny_flags, tmp_path, slow_setup, damage):
    content, needle = DAMAGE[damage]
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    if content is not None:
        (run_dir / "checkpoints" / "last.pt").write_bytes(content)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))

    # pretrained on: the old order asked the hub first when last.pt was missing
    trainer = Trainer(resolve_config({**tiny_flags, "pretrained": True}, vram_gib=None), resume_dir=run_dir)
    with pytest.raises(ResumeError, match=needle):
        trainer.fit()

    assert slow_setup == []
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
