"""Issue 11 acceptance: generated config dicts, YAML texts and CLI argument lists are either
accepted or rejected with one `error:` line and exit code 2 -- never a traceback or another
exception. Small example counts by default; `-m slow` runs many more."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from core.config import FIELD_NAMES, ConfigError, flatten_yaml_config, parse_yaml_text, validate_layer
from medcls_tui.cli import app

runner = CliRunner()
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["auto", "1e-3", "inf", "nan", "-1", "resnet18", "cuda:0", "../x"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
config_dicts = st.dictionaries(keys, values, max_size=6)


def _check_config(data) -> None:
    try:
        validate_layer(data, "fuzz")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


def _check_yaml(text: bytes) -> None:
    try:
        flat, _ = flatten_yaml_config(parse_yaml_text(text, "fuzz.yaml"), "fuzz.yaml")
        validate_layer({k: v for k, v in flat.items() if k != "__sections__"}, "fuzz.yaml")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


yaml_texts = st.one_of(
    st.binary(max_size=200),
    st.lists(st.tuples(st.sampled_from(FIELD_NAMES + ("tags", "full_finetune", "&a", "*a", "- x", "? ")),
                       st.sampled_from(["true", "1e5", ".nan", ".inf", "[1, 2]", "{a: 1}", "&a x", "*a", "'",
                                        "!!python/object:os.system", "0x10", "~", "2024-01-01", "-1", "\"\\x00\""])),
             max_size=6).map(lambda kv: "\n".join(f"{k}: {v}" for k, v in kv).encode()),
)

FLAG_NAMES = [f"--{k}" for k in FIELD_NAMES] + ["--preset", "--config", "--retrain"]
arg_lists = st.lists(st.tuples(st.sampled_from(FLAG_NAMES),
                               st.sampled_from(["0", "-1", "1e20", "inf", "nan", "true", "abc", "", "/dev/null",
                                                "999999999", "0.5", "auto", "../..", "cuda:9"])),
                     min_size=1, max_size=4).map(lambda pairs: [x for pair in pairs for x in pair])


def _check_cli(args: list[str], tmp_path) -> None:
    if "--output_dir" not in args:
        args = [*args, "--output_dir", str(tmp_path / "runs")]
    result = runner.invoke(app, ["train", "--print-config", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        return
    assert result.exit_code == 2, (args, result.exit_code, result.output[-1500:])
    if result.stderr.startswith("error:"):
        assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1, result.stderr
    else:  # typer's usage error for a value it cannot even parse (e.g. 'abc' for an int flag)
        assert result.stderr.startswith("Usage:") and "Error:" in result.stderr, result.stderr


@FAST
@given(config_dicts)
def test_fuzz_config_dicts(data):
    _check_config(data)


@FAST
@given(yaml_texts)
def test_fuzz_yaml_texts(text):
    _check_yaml(text)


@FAST
@given(arg_lists)
def test_fuzz_cli_arguments(tmp_path, args):
    _check_cli(args, tmp_path)


@pytest.mark.slow
@SLOW
@given(config_dicts)
def test_fuzz_config_dicts_many(data):
    _check_config(data)


@pytest.mark.slow
@SLOW
@given(yaml_texts)
def test_fuzz_yaml_texts_many(text):
    _check_yaml(text)


@pytest.mark.slow
@SLOW
@given(arg_lists)
def test_fuzz_cli_arguments_many(tmp_path, args):
    _check_cli(args, tmp_path)
