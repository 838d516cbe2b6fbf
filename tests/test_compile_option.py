"""--compile: the training step runs through torch.compile's wrapper; checkpoints keep plain keys."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from core.runs.checkpoint import load_checkpoint
from core.training.trainer import Trainer
from core.config.resolve import resolve_config
from medcls_tui.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingWrapper(torch.nn.Module):
    """Stands in for torch.compile's OptimizedModule: forwards to the model and counts the calls."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self._orig_mod(x)


def test_compile_flag_trains_through_the_compiled_module(tiny_flags, monkeypatch):
    wrappers = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: wrappers.append(CountingWrapper(model)) or wrappers[-1])
    flags = {**tiny_flags, "epochs": 1, "max_steps_per_epoch": 3, "compile": True}
    trainer = Trainer(resolve_config(flags, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished"
    assert len(wrappers) == 1 and wrappers[0]._orig_mod is trainer.model
    assert wrappers[0].calls == 3
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    assert not any(k.startswith("_orig_mod") for k in state["model"])


def test_compile_is_off_by_default_and_a_cli_flag(tiny_flags, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled without --compile"))
    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 1}, vram_gib=None))
    assert trainer.fit()["status"] == "finished" and trainer.train_model is trainer.model
    result = CliRunner().invoke(app, ["train", "--compile", "--print-config"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.split()[:1] == ["compile"])
    assert "True" in line and "flag" in line


@pytest.mark.slow
def test_real_torch_compile_trains_on_cpu(tiny_flags):
    summary = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 2, "compile": True},
                                     vram_gib=None)).fit()
    assert summary["status"] == "finished", summary.get("error")
