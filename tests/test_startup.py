"""Start-up and showing a config: commands that need no model import neither torch nor timm, names
come from the sources/snapshot (and agree with the imported registries and timm), and the data's
location is checked before training, not when showing or resolving a preset (issue 16, points 1, 5)."""
from __future__ import annotations

import re

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.config import ConfigError, TrainConfig
from core.data.location_check import check_data_location
from core.config.resolve import resolve_config
from medcls_tui.cli import app

from conftest import REPO

runner = CliRunner()

CHILD = """
import sys
from medcls_tui.cli import app
try:
    app(args=sys.argv[1:])
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = [m for m in ("torch", "timm", "torchvision", "textual") if m in sys.modules]
print("HEAVY=" + ",".join(heavy), "CODE=" + str(code or 0), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["presets", "list"],
    ["presets", "show", "nih"],
    ["train", "--preset", "nih", "--print-config"],
    ["train", "--model", "vit_small_patch16", "--print-config"],
    ["runs"],
    ["--help"],
    ["train", "--help"],
])
def test_commands_that_need_no_model_import_no_torch(tmp_path, args):
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**_env(tmp_path)})
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "HEAVY= CODE=0", proc.stderr[-2000:]


def _env(tmp_path: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO), "MEDCLS_PRESET_DIR": str(tmp_path / "presets")}


def test_declared_names_match_the_imported_registries():
    """The names read from the source files are exactly what the registries hold once imported."""
    from core.config import resolve
    from core.augment import STRATEGIES, _import_all
    from core.data import DATASETS, _import_sources
    from core.training.losses import LOSSES
    from core.config.registry import declared_names

    _import_all()
    _import_sources()
    aug = REPO / "core" / "augment"
    assert declared_names(sorted(aug.glob("*.py")), "register_strategy") == set(STRATEGIES.names())
    assert declared_names(sorted((REPO / "core" / "data").glob("*.py")), "register_dataset") == set(DATASETS.names())
    assert declared_names([REPO / "core" / "training" / "losses.py"], "register_loss") == set(LOSSES.names())
    assert resolve.dataset_names() == DATASETS.names() and resolve.loss_names() == LOSSES.names()
    assert resolve.strategy_names() == STRATEGIES.names()


def test_timm_name_snapshot_is_timms_list_for_the_installed_version():
    import timm

    from core.models.names import _read_snapshot

    version, names = _read_snapshot()
    if version != timm.__version__:
        pytest.skip(f"snapshot is for timm {version}, installed {timm.__version__}: the live list is used "
                    "(regenerate: uv run python -m core.models.names --write)")
    assert names == timm.list_models()


def test_model_names_resolve_without_timm_and_suggest_close_names():
    code = ("import sys; from core.models.names import resolve_model_name as r; "
            "print(r('convnext'), r('resnet18'), r('EfficientNet_B0'), 'timm' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.stdout.split() == ["convnext_tiny", "resnet18", "efficientnet_b0", "False"], proc.stderr
    with pytest.raises(ConfigError, match=r"model: unknown model 'resnet_50'\. Did you mean 'resnet50'"):
        resolve_config({"model": "resnet_50"}, vram_gib=None)


def test_nih_preset_resolves_without_data_and_the_lr_does_not_depend_on_it(tmp_path):
    without = resolve_config({}, preset="nih", vram_gib=None)
    with_dir = resolve_config({"data_dir": str(tmp_path)}, preset="nih", vram_gib=None)
    assert without.config.lr == with_dir.config.lr == 0.001  # resnet50 fine-tune tip
    assert without.config.model_dump(exclude={"data_dir"}) == with_dir.config.model_dump(exclude={"data_dir"})


def test_presets_show_nih_needs_no_data_and_says_what_training_needs():
    result = runner.invoke(app, ["presets", "show", "nih"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^lr +=\s+0\.001 ", result.output, re.M), result.output
    assert "note: to train it, data_dir: --dataset nih needs --data_dir" in result.output


def test_train_without_the_data_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["train", "--preset", "nih", "--output_dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip() == "error: data_dir: --dataset nih needs --data_dir pointing at the downloaded data"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("dataset, layout, needle", [
    ("nih", None, "data_dir: --dataset nih needs --data_dir"),
    ("nih", "missing", "data_dir: folder not found"),
    ("nih", "empty", "no NIH label file (Data_Entry_2017_v2020.csv or Data_Entry_2017.csv)"),
    ("nih", {"Data_Entry_2017_v2020.csv": "Image Index,Finding Labels\n"}, None),
    ("covidx", "empty", "no COVIDx label file"),
    ("covidx", {"train_COVIDx9A.txt": ""}, None),
    ("vinbigdata", "empty", "VinBigData train.csv not found"),
    ("folder", {"a/x.png": "", "b/y.png": ""}, None),
    ("folder", {"a/x.png": ""}, "expected at least 2 class sub-folders"),
    ("csv", "empty", "csv: --dataset csv needs --csv FILE"),
    ("synthetic", None, None),
])
def test_data_location_is_checked_by_name(tmp_path, dataset, layout, needle):
    data_dir = None
    if layout == "missing":
        data_dir = str(tmp_path / "nope")
    elif layout is not None:
        data_dir = str(tmp_path / "data")
        (tmp_path / "data").mkdir()
        for rel, text in ({} if layout == "empty" else layout).items():
            (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / rel).write_text(text)
    config = TrainConfig(dataset=dataset, data_dir=data_dir)
    if needle is None:
        check_data_location(config)
        return
    with pytest.raises(ConfigError) as err:
        check_data_location(config)
    assert needle in str(err.value)
    assert str(err.value).split(":")[0] in ("data_dir", "csv", "label_file")


# ------------------------------------------------------------------ errors a new user meets (point 11)
def test_every_unknown_key_is_named_with_the_closest_real_key(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("learning_rate: 0.01\nepoch: 3\nfull_finetune: {layerdecay: 0.7}\nmodel: resnet18\n")
    result = runner.invoke(app, ["train", "--preset", str(preset), "--print-config"])
    assert result.exit_code == 2
    line, = result.output.strip().splitlines()
    assert line.startswith(f"error: {preset}: unknown keys 'learning_rate' (did you mean 'lr'?), "
                           "'epoch' (did you mean 'epochs'?), 'full_finetune.layerdecay' (did you mean 'layer_decay'?)."), line


@pytest.mark.parametrize("args, needle", [
    (["--batch_size", "abc"], "error: command line: batch_size: must be a whole number >= 1 or 'auto'"),
    (["--model", "resnet_50"], "Did you mean 'resnet50'"),
    (["--dataset", "nhi"], "dataset: unknown dataset 'nhi'. Did you mean 'nih'?"),
])
def test_bad_values_say_what_is_allowed(args, needle):
    result = runner.invoke(app, ["train", *args, "--print-config"])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_every_train_option_has_a_complete_one_line_help():
    import typer.main

    command = typer.main.get_command(app).commands["train"]
    empty, cut = [], []
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        text = (param.help or "").strip()
        if not text:
            empty.append(param.name)
        elif "\n" in text or not text.endswith((".", ")", "?")):
            cut.append((param.name, text))
    assert not empty and not cut, (empty, cut)
    assert len(command.params) > 50  # every config key is an option


def test_the_apps_first_screen_comes_before_torch(tmp_path):
    """The app process draws its first screen (a loading line) without having imported torch or timm."""
    code = """
import os, sys
from medcls_tui.app import MedclsApp

async def first_screen(pilot):
    heavy = [m for m in ("torch", "timm") if m in sys.modules]
    print(type(pilot.app.screen).__name__, "HEAVY=" + ",".join(heavy), flush=True)
    os._exit(0)

MedclsApp(output_dir=sys.argv[1]).run(headless=True, size=(80, 24), auto_pilot=first_screen)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=_env(tmp_path))
    assert proc.stdout.split() in (["LoadingScreen", "HEAVY="], ["PickerScreen", "HEAVY="]), proc.stderr[-2000:]
