"""Points 9 and 10 of issue 11 (parts owned here): hostile or broken inputs get one line naming
the file/key and exit code 2, never a traceback or a hang; silent wrong values are rejected."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from core.config import ConfigError, TrainConfig, load_yaml_file, validate_layer
from core.config.presets import find_preset, list_presets
from core.runs.folder import list_runs
from medcls_tui.cli import app

runner = CliRunner()

BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "lr: *i\n"


def cli(*args: str):
    return runner.invoke(app, list(args))


def one_line(result, code: int = 2, *needles: str) -> str:
    """Exit code, no exception escaping, exactly one `error:` line on stderr."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, (result.exit_code, result.output[-2000:], result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------- YAML files
YAML_CASES = {
    "alias_bomb": (BILLION_LAUGHS.encode(), "expands to more than"),
    "not_utf8": (b"lr: 0.001\nmodel: r\xe9snet\n", "not UTF-8"),
    "utf16": ("lr: 0.001\n".encode("utf-16"), "UTF-16 text, not UTF-8"),
    "binary": (bytes(range(256)) * 4, "binary file"),
    "deep_nesting": (("a: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(), "nested too deeply"),
    "deep_mapping": ("".join("  " * i + f"k{i}:\n" for i in range(300)).encode() + b"  " * 300 + b"x\n",
                     "nested too deeply"),
    "recursive_alias": (b"a: &a [*a]\n", "nested too deeply"),
    "syntax": (b"lr: [0.1\nmodel: x\n", "invalid YAML"),
    "scalar": (b"just a string\n", "expected a YAML mapping"),
    "list": (b"- lr\n- 0.1\n", "expected a YAML mapping"),
    "bool_lr": (b"lr: true\n", "lr: must be a number, not a boolean"),
    "nan_lr": (b"lr: .nan\n", "lr"),
    "inf_mixup": (b"mixup_alpha: .inf\n", "mixup_alpha"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_config_file_problems_are_one_line_and_exit_2(tmp_path, case):
    content, *needles = YAML_CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(content)
    line = one_line(cli("train", "--config", str(path), "--print-config", "--output_dir", str(tmp_path / "runs")),
                    2, *needles)
    assert len(line) < 600


def test_control_characters_in_a_key_are_quoted_escaped_on_one_line(tmp_path):
    """Found by bench/reliability.py's fuzzing: a quoted YAML key holding a newline split the error."""
    path = tmp_path / "newline_key.yaml"
    path.write_bytes(b'"lr\\nx\\t": 1\n')
    one_line(cli("train", "--config", str(path), "--print-config"), 2, "unknown key 'lr\\nx\\t'")


def test_alias_bomb_is_refused_quickly(tmp_path):
    """The bound is on expanded size, so the refusal does not depend on how fast the machine is."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match="expands to more than 100000"):
        load_yaml_file(path)


def test_anchors_within_the_bound_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b 0.001\nlr: *b\n")
    assert load_yaml_file(path) == {"base": 0.001, "lr": 0.001}


# ---------------------------------------------------------------- config values
FLOAT_FIELDS = sorted(k for k, info in TrainConfig.model_fields.items()
                      if "float" in str(info.annotation))


@pytest.mark.parametrize("key", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_field_rejects_nan_and_inf(key, bad):
    with pytest.raises(ConfigError, match=key):
        validate_layer({key: bad}, "test")


@pytest.mark.parametrize("key", ["lr", "epochs", "batch_size", "mixup_alpha", "synthetic_size", "seed"])
def test_booleans_are_not_numbers(key):
    with pytest.raises(ConfigError, match=f"{key}: must be a number, not a boolean"):
        validate_layer({key: True}, "test")


@pytest.mark.parametrize("args,needle", [
    (("--warmup_epochs", "inf"), "warmup_epochs"),
    (("--mixup_alpha", "nan"), "mixup_alpha"),
    (("--min_delta", "nan"), "min_delta"),
    (("--divergence_threshold", "inf"), "divergence_threshold"),
    (("--focal_gamma", "nan"), "focal_gamma"),
    (("--xdm_domain_lr", "inf"), "xdm_domain_lr"),
    (("--synthetic_size", "100000000"), "synthetic_size: must be at most"),
    (("--synthetic_size", "1e20"), "synthetic_size"),
    (("--checkpoint_every", "0"), "checkpoint_every"),
    (("--output_dir", "/dev/null"), "output_dir"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, args, needle):
    argv = ["train", "--print-config", "--output_dir", str(tmp_path / "runs"), *args]
    result = cli(*argv)
    if result.exit_code == 2 and not result.stderr.startswith("error:"):
        # typer's own usage errors (a non-integer for an int flag) are a short usage block, still exit 2
        assert "Traceback" not in result.output and needle in result.stderr
        return
    one_line(result, 2, needle)


def test_output_dir_a_file_is_refused_before_training(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    one_line(cli("train", "--output_dir", str(target / "sub"), "--epochs", "1"), 2, "is not a folder")


# ---------------------------------------------------------------- presets
def test_one_broken_user_preset_never_breaks_the_others(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setenv("MEDCLS_PRESET_DIR", str(folder))
    (folder / "good.yaml").write_text("name: good\nmodel: resnet18\n")
    (folder / "tags.yaml").write_text("name: tags\ntags: 5\n")
    (folder / "binary.yaml").write_bytes(b"\x00\xff\xfe" * 10)
    (folder / "bomb.yaml").write_text(BILLION_LAUGHS)
    (folder / "scalar.yaml").write_text("42\n")
    names = {p.name for p in list_presets()}
    assert "good" in names and "demo" in names and not {"tags", "binary", "bomb", "scalar"} & names
    listed = cli("presets", "list")
    assert listed.exit_code == 0, listed.output
    for stem, why in (("tags", "'tags' must be a list"), ("binary", "binary file"), ("bomb", "expands"),
                      ("scalar", "expected a YAML mapping")):
        row = next(ln for ln in listed.stdout.splitlines() if f" {stem} " in ln)
        assert "BROKEN" in row and why in row, row
    assert find_preset("good").values["model"] == "resnet18"
    assert cli("train", "--preset", "demo", "--print-config").exit_code == 0
    one_line(cli("train", "--preset", "tags", "--print-config"), 2, "preset 'tags' is broken")


# ---------------------------------------------------------------- runs listing
@pytest.mark.parametrize("content", [b"\x89PNG\x00\xff" * 20, b"[1, 2]", b'{"status": 5, "best_value": "high", '
                                     b'"epochs_completed": "many", "monitor": [1], "best_epoch": true}', b"{"])
def test_runs_listing_survives_broken_summaries(tmp_path, content):
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: resnet18\n")
    (run / "summary.json").write_bytes(content)
    info = list_runs(str(tmp_path / "runs"))[0]
    assert info.best_value is None and info.epochs_completed == 0
    result = cli("runs", "--output_dir", str(tmp_path / "runs"))
    assert result.exit_code == 0 and "r1" in result.stdout, (result.output, repr(result.exception))


# ---------------------------------------------------------------- csv tables
def _csv_flags(tmp_path, table: bytes) -> list[str]:
    from PIL import Image
    import numpy as np

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.full((20, 20), 40 * i, dtype=np.uint8)).save(data / f"{i}.png")
    (data / "labels.csv").write_bytes(table)
    return ["train", "--dataset", "csv", "--data_dir", str(data), "--csv", "labels.csv", "--model", "resnet18",
            "--img_size", "32", "--epochs", "1", "--output_dir", str(tmp_path / "runs"), "--num_workers", "0",
            "--no_pretrained"]


@pytest.mark.parametrize("table,needle", [
    (b"path,label\n0.png,a\n1.png,\"" + b"x" * 140_000 + b"\"\n", "labels.csv line 3: unreadable csv"),
    (b"path,label,path\n0.png,a,train\n1.png,b,0.png,extra\n", "column 'path' appears 2 times"),
    (b"path,label\n0.png,a\n1.png,b,extra\n", "line 3: 3 fields but the header has 2"),
    (b"path,label\n0.png,a\n0.png,b\n1.png,b\n", "line 3: '0.png' already appears on line 2"),
    (b"path,label\n0.png,\xe9\n", "not UTF-8"),
])
def test_broken_csv_tables_are_one_line(tmp_path, table, needle):
    # a data problem found while setting up: one line, before any run folder is written
    result = cli(*_csv_flags(tmp_path, table))
    assert result.exit_code in (1, 2)
    one_line(result, result.exit_code, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_exact_duplicate_rows_are_dropped_so_no_image_is_in_train_and_val(tmp_path):
    from core.data.csv_source import build_index
    from core.config import TrainConfig

    rows = b"path,label\n" + b"".join(f"{i}.png,{'ab'[i % 2]}\n".encode() for i in range(4)) * 3
    _csv_flags(tmp_path, rows)
    index = build_index(TrainConfig(dataset="csv", data_dir=str(tmp_path / "data"), csv="labels.csv"))
    assert len(index.records) == 4
    assert any("8 duplicated row(s) dropped" in n for n in index.notes)
