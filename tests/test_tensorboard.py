"""--tensorboard (issue 16.14): the run's scalars and hyper-parameters in <run>/tensorboard, read back
with TensorBoard's own EventAccumulator; a clear one-line error without the extra."""
from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from core.config import ConfigError
from core.training.trainer import Trainer
from core.config.resolve import resolve_config
from core.training.tensorboard_log import TB_DIR
from medcls_tui.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def accumulator(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / TB_DIR), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_run_writes_scalars_per_class_auroc_and_hparams(tiny_flags):
    flags = {**tiny_flags, "max_steps_per_epoch": 4, "log_every": 2, "tensorboard": True, "lr": 0.002}
    trainer = Trainer(resolve_config(flags, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished", summary.get("error")
    acc = accumulator(trainer.run_dir)
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/auroc", "val/acc", "lr", "train/loss_step", "lr/step"} <= tags
    assert {f"val_auroc_per_class/{c}" for c in trainer.bundle.classes} <= tags
    assert {"system/cpu_pct", "system/loader_wait_frac"} <= tags

    val_auroc = acc.Scalars("val/auroc")
    assert [s.step for s in val_auroc] == [1, 2]
    assert val_auroc[-1].value == pytest.approx(summary["val_auroc"], abs=1e-6)
    assert [s.step for s in acc.Scalars("train/loss_step")] == [2, 4, 6, 8]  # every log_every steps
    best = acc.Scalars("best/value")[-1]
    assert best.step == summary["best_epoch"] and best.value == pytest.approx(summary["best_value"], abs=1e-6)

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == pytest.approx(0.002) and hp["model"].string_value == "resnet18"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "val/auroc" in {m.name.tag for m in experiment.metric_infos}
    assert "_hparams_/session_end_info" in content


def test_off_by_default_writes_nothing(tiny_flags):
    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 1}, vram_gib=None))
    assert trainer.fit()["status"] == "finished"
    assert not (trainer.run_dir / TB_DIR).exists()


def test_missing_extra_is_one_line_before_anything_is_written(tiny_flags, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--tensorboard needs the tensorboard package.*--extra tensorboard"):
        Trainer(resolve_config({**tiny_flags, "tensorboard": True}, vram_gib=None)).fit()
    assert not (tmp_path / "runs").exists()

    result = CliRunner().invoke(app, ["train", "--tensorboard", "--epochs", "1", "--no_pretrained",
                                      "--output_dir", str(tmp_path / "cli_runs")])
    assert result.exit_code == 2
    assert "tensorboard" in result.output and "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1


def test_a_failing_writer_warns_once_and_training_goes_on(tiny_flags, monkeypatch):
    from core.training.tensorboard_log import TensorBoardLogger

    def broken(self, e):
        raise OSError("No space left on device")

    monkeypatch.setattr(TensorBoardLogger, "_on_EpochDone", broken)
    events = []
    trainer = Trainer(resolve_config({**tiny_flags, "max_steps_per_epoch": 2, "tensorboard": True}, vram_gib=None),
                      on_event=events.append)
    assert trainer.fit()["status"] == "finished"
    warnings = [e.message for e in events if type(e).__name__ == "TrainingWarning" and "tensorboard" in e.message]
    assert warnings == ["tensorboard: logging stopped (No space left on device); training goes on"]
