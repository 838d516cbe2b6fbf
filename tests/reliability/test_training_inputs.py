"""Issue 24, the training side: pretrained files of another architecture or with NaN weights, a damaged
hub-cache entry (garbage, /etc/passwd, /dev/zero, a FIFO), numbers that overflow, a mistyped pixel-cache
manifest, and a kill between the two epoch-end checkpoints. Every hub cache is a temporary HF_HOME
(conftest's `_no_model_hub`), never the network."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import core.training.components as engine_module  # where the run's components are built
from core.config import NUMERIC_FIELDS, UPPER_BOUNDS, ConfigError, TrainConfig
from core.models.pretrained import hub_weights, seed_hub_cache
from core.config.resolve import resolve_config
from core.runs.folder import read_summary
from medcls_tui.cli import app

from .conftest import assert_one_line_error, medcls_cmd, run_cli

runner = CliRunner()
FLAGS = ["--dataset", "synthetic", "--model", "resnet18", "--img_size", "32", "--synthetic_size", "64",
         "--batch_size", "8", "--epochs", "1", "--max_steps_per_epoch", "2", "--device", "cpu", "--num_workers", "0"]


def one_error_line(result) -> str:
    """CliRunner result: exit 2, one `error:` line, no traceback."""
    assert result.exit_code == 2, result.output[-3000:]
    assert "Traceback" not in result.output, result.output[-3000:]
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output[-3000:]
    return lines[0]


def full_state(model: str) -> dict[str, torch.Tensor]:
    """A timm ImageNet state dict (classifier `fc` included), as a downloaded checkpoint holds it."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(model, pretrained=False).state_dict()


@pytest.fixture
def data_work(monkeypatch):
    """Records whether the data scan started (a weights problem must be refused before it)."""
    calls = []
    real = engine_module.load_dataset

    def load_dataset(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "load_dataset", load_dataset)
    return calls


# ---------------------------------------------------------------------------- --pretrained_path
def test_weights_of_a_deeper_architecture_are_refused_naming_the_extra_tensors(tmp_path, data_work):
    """Every resnet18 tensor has its twin in resnet34: only the tensors left over tell them apart."""
    path = tmp_path / "resnet34.pth"
    torch.save(full_state("resnet34"), path)
    line = one_error_line(runner.invoke(app, ["train", *FLAGS, "--pretrained_path", str(path),
                                              "--output_dir", str(tmp_path / "runs")]))
    assert line.startswith(f"error: pretrained_path: {path} does not fit resnet18: ")
    assert "layer1.2.conv1.weight" in line and "no place" in line
    assert data_work == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("layout", ["imagenet_fc", "medcls_best_pt"])
def test_a_classifier_head_in_the_file_is_not_an_unexpected_tensor(tmp_path, layout):
    from core.models.build import build_model, check_pretrained_path

    state = full_state("resnet18")
    if layout == "medcls_best_pt":  # medcls's own checkpoint: backbone.* and its head classifier.*
        model = build_model("resnet18", 3, "linear_probe", img_size=32)
        model.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
        state = {"model": model.state_dict()}
    torch.save(state, tmp_path / "w.pth")
    check_pretrained_path("resnet18", str(tmp_path / "w.pth"), img_size=32)  # no error


@pytest.mark.parametrize("damage,first_bad", [("all_nan", "conv1.weight"),
                                              ("one_inf", "layer3.0.bn1.running_var")])
def test_nonfinite_pretrained_file_is_refused_naming_the_first_bad_tensor(tmp_path, data_work, damage, first_bad):
    state = full_state("resnet18")
    for key, value in state.items():
        if value.is_floating_point() and (damage == "all_nan" or key == first_bad):
            value.fill_(float("nan") if damage == "all_nan" else float("inf"))
    if damage == "all_nan":  # a torch file keeps the model's order: the first tensor is the first named
        path = tmp_path / "w.pth"
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    line = one_error_line(runner.invoke(app, ["train", *FLAGS, "--pretrained_path", str(path),
                                              "--output_dir", str(tmp_path / "runs")]))
    assert str(path) in line and "non-finite" in line and f"in {first_bad};" in line
    assert data_work == [] and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- the hub cache
HUB_MODEL = "test_resnet"  # a real timm model with hub weights (timm/test_resnet.r160_in1k), 0.4M parameters


def seeded_hub_file() -> Path:
    return seed_hub_cache(hub_weights(HUB_MODEL), full_state(HUB_MODEL))


def _replace(path: Path, how: str) -> None:
    path.unlink()
    if how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "etc_passwd":
        path.symlink_to("/etc/passwd")
    elif how == "dev_zero":
        path.symlink_to("/dev/zero")
    elif how == "folder":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)


HUB_DAMAGE = {"garbage": "can be read safely", "empty": "can be read safely", "etc_passwd": "can be read safely",
              "dev_zero": "not a regular file", "folder": "is a folder", "nan": "non-finite values (NaN or inf) in"}


@pytest.mark.parametrize("damage", sorted(HUB_DAMAGE))
def test_damaged_hub_cache_file_is_one_line_before_the_data_work(tmp_path, data_work, damage):
    path = seeded_hub_file()
    if damage == "nan":
        state = full_state(HUB_MODEL)
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
        seed_hub_cache(hub_weights(HUB_MODEL), state)
    else:
        _replace(path, damage)
    flags = [f if f != "resnet18" else HUB_MODEL for f in FLAGS]
    line = one_error_line(runner.invoke(app, ["train", *flags, "--pretrained", "--output_dir", str(tmp_path / "runs")]))
    assert line.startswith(f"error: pretrained: {HUB_MODEL} weights ") and str(path) in line
    assert HUB_DAMAGE[damage] in line and "delete that cache entry" in line
    assert data_work == [] and not (tmp_path / "runs").exists()


def test_fifo_in_the_hub_cache_is_one_line_not_a_hang(tmp_path):
    """A real process (timm's open of a FIFO would block it for ever): it must answer within the timeout."""
    path = seeded_hub_file()
    _replace(path, "fifo")
    flags = [f if f != "resnet18" else HUB_MODEL for f in FLAGS]
    done = run_cli(tmp_path, "train", *flags, "--pretrained", "--output_dir", str(tmp_path / "runs"), timeout=180)
    assert_one_line_error(done, 2, str(path), "not a regular file (a pipe, device or socket)")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- numbers that overflow
def _huge(field: str):
    annotation = TrainConfig.model_fields[field].annotation
    return 10**30 if "int" in str(annotation) and "float" not in str(annotation) else 1e308


@pytest.mark.parametrize("field", sorted(NUMERIC_FIELDS))
def test_every_number_has_a_ceiling(field):
    """1e308 (or 10**30 for whole numbers) in any numeric setting is one config error naming it, never an
    OverflowError once the steps are counted (--warmup_epochs 1e308) or a seed torch cannot take."""
    with pytest.raises(ConfigError, match=rf"^command line: {field}: must be"):
        resolve_config({field: _huge(field)}, vram_gib=None)
    if field in UPPER_BOUNDS:  # the ceiling itself is allowed
        resolve_config({field: UPPER_BOUNDS[field]}, vram_gib=None)


def test_warmup_epochs_1e308_is_one_line_exit_2(tmp_path):
    line = one_error_line(runner.invoke(app, ["train", *FLAGS, "--no_pretrained", "--warmup_epochs", "1e308",
                                              "--output_dir", str(tmp_path / "runs")]))
    assert "warmup_epochs: must be at most 100000 (got 1e+308)" in line
    assert not (tmp_path / "runs").exists()


def test_a_large_seed_trains_with_augmentation(tmp_path):
    """The per-sample augmentation seed grows with the seed: a seed like 20240101 overflowed torch's range."""
    result = runner.invoke(app, ["train", *FLAGS, "--no_pretrained", "--seed", str(2**32 - 1), "--augmentation",
                                 "standard", "--output_dir", str(tmp_path / "runs"), "--run_name", "s"])
    assert result.exit_code == 0, result.output[-3000:]
    assert read_summary(tmp_path / "runs" / "s")["status"] == "finished"


# ---------------------------------------------------------------------------- pixel-cache manifest
def _folder_dataset(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("field,value", [("img_size", "abc"), ("img_size", "32"), ("img_size", [32]),
                                         ("img_size", None), ("img_size", 1e400), ("images_file", 7),
                                         ("row_size", "12")])
def test_mistyped_cache_manifest_is_ignored_and_rebuilt(tmp_path, field, value):
    """As the cache documents: a manifest it cannot trust is no cache. Through the engine's data path."""
    from core.data import load_dataset

    data = _folder_dataset(tmp_path / "data")
    cfg = resolve_config({"dataset": "folder", "data_dir": str(data), "img_size": 32, "cache_dir":
                          str(tmp_path / "cache")}, vram_gib=None).config
    load_dataset(cfg)
    (manifest_path,) = (tmp_path / "cache").rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    if field == "row_size":
        manifest["files"][0][1] = value
    else:
        manifest[field] = value
    manifest_path.write_text(json.dumps(manifest))  # 1e400 is written as Infinity, read back as inf
    decoded = []
    bundle = load_dataset(cfg, progress=lambda done, total, desc: decoded.append(total))
    assert len(bundle.train) + len(bundle.val) == 16
    assert 16 in decoded  # rebuilt: every image decoded again
    assert json.loads(manifest_path.read_text())["img_size"] == 32


def test_cache_manifest_img_size_abc_in_a_cli_run(tmp_path):
    data = _folder_dataset(tmp_path / "data")
    args = ["train", "--dataset", "folder", "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
            *FLAGS[2:], "--no_pretrained", "--output_dir", str(tmp_path / "runs")]
    assert runner.invoke(app, [*args, "--run_name", "one"]).exit_code == 0
    (manifest_path,) = (tmp_path / "cache").rglob("manifest.json")
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "img_size": "abc"}))
    result = runner.invoke(app, [*args, "--run_name", "two"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output[-3000:]
    assert read_summary(tmp_path / "runs" / "two")["status"] == "finished"


# ---------------------------------------------------------------------------- a kill between the checkpoints
KILL_BETWEEN_CHECKPOINTS = """
import os, signal, sys
import core.training.trainer as engine
real = engine.save_atomic
saved = {}
def save_atomic(obj, path):
    step = obj["position"]["global_step"]
    if obj["position"]["step_in_epoch"] == 0 and saved.get(step) not in (None, path.name):
        os.kill(os.getpid(), signal.SIGKILL)  # the second epoch-end file: the crash window of issue 24
    real(obj, path)
    saved[step] = path.name
engine.save_atomic = save_atomic
sys.argv = ["medcls", *sys.argv[1:]]
from medcls_tui.cli import main
main()
"""


@pytest.mark.processes
def test_kill_between_the_two_epoch_end_checkpoints_resumes_and_keeps_best(tmp_path):
    """SIGKILL after the first and before the second of best.pt / last.pt at the end of the epoch (a real
    kill, in the real CLI): --retrain resumes from what exists, and best.pt is the best epoch's state."""
    import subprocess

    from .conftest import child_env

    out = tmp_path / "runs"
    args = ["train", *FLAGS, "--no_pretrained", "--checkpoint_minutes", "0", "--output_dir", str(out),
            "--run_name", "k"]
    killed = subprocess.run([medcls_cmd()[0], "-c", KILL_BETWEEN_CHECKPOINTS, *args], cwd=tmp_path,
                            env=child_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpt = out / "k" / "checkpoints"
    assert len(list(ckpt.glob("*.pt"))) == 1  # the window: one of the two written

    done = run_cli(tmp_path, "train", "--retrain", "k", "--output_dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_summary(out / "k")
    assert summary["status"] == "finished" and summary["best_epoch"] == 1
    best = torch.load(ckpt / "best.pt", weights_only=True)
    last = torch.load(ckpt / "last.pt", weights_only=True)
    assert best["position"]["epoch"] == best["early_stopping"]["best_epoch"] == 1
    for key, value in last["model"].items():  # the epoch-1 state (1 epoch: last is best)
        assert torch.equal(best["model"][key], value), key
