"""Issue 24 (points 1-3) and issue 28 (points 6, 8): hostile input to the after-training commands
(`eval`, `predict`, `explain`, `export`) through the real CLI. Every bad checkpoint, config, output path,
csv of paths and device is one `error:` line naming the file, exit 2, nothing written; outputs never
collide with each other or with the run's own files; arguments are checked before the model or data load.

One tiny trained run is shared (module fixture); a case that changes a run works on a clone whose
checkpoints are hard links (cheap), replaced, never written through.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medcls_tui.cli import app

from .test_hostile_inputs import one_line

runner = CliRunner()
COMMANDS = ("eval", "predict", "explain", "export")
TINY_RUN = {"dataset": "synthetic", "synthetic_task": "binary", "synthetic_size": 64, "model": "resnet18",
            "img_size": 32, "batch_size": 8, "epochs": 1, "max_steps_per_epoch": 2, "num_workers": 0,
            "pretrained": False, "device": "cpu", "run_name": "x"}


def train_tiny_run(out: Path) -> Path:
    """The issue's run (`medcls train --no_pretrained --model resnet18 --img_size 32 ... --run_name x`)."""
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    trainer = Trainer(resolve_config({**TINY_RUN, "output_dir": str(out)}, vram_gib=None))
    assert trainer.fit()["status"] == "finished"
    return Path(trainer.run_dir)


def clone_run(src: Path, dst: Path) -> Path:
    """Top-level files copied, checkpoints hard-linked (a case replaces a checkpoint, never edits it)."""
    (dst / "checkpoints").mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)
    for f in (src / "checkpoints").iterdir():
        os.link(f, dst / "checkpoints" / f.name)
    return dst


def replace_file(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under a folder with its content hash: a refused command must leave it identical."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def an_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)).save(path)
    return path


def command_args(command: str, run: Path, image: Path, work: Path) -> list[str]:
    """The command on `run` with outputs under `work` (the commands that write do so into the run otherwise)."""
    return {"eval": ["eval", str(run), "--bootstrap", "0", "--no_plots"],
            "predict": ["predict", str(run), str(image), "--out", str(work / "p.csv")],
            "explain": ["explain", str(run), str(image), "--out", str(work / "e.png")],
            "export": ["export", str(run), "--format", "torchscript", "--out", str(work / "m.pt")]}[command]


def cli(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


class _Payload:
    """A pickle that would create a file when unpickled: weights_only loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def broken_checkpoints(real: bytes, marker: Path) -> dict[str, bytes]:
    """best.pt contents that are not a usable checkpoint of this run."""
    import io

    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    return {
        "garbage": bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
        "truncated": real[: len(real) // 3],
        "empty": b"",
        "not_a_dict": saved([1, 2, 3]),
        "no_model_key": saved({"classes": ["Normal", "Abnormal"]}),
        "wrong_model": saved({"model": {"fc.weight": torch.zeros(2, 3)}, "classes": ["Normal", "Abnormal"]}),
        "wrong_classes_count": saved({"model": {k: v for k, v in torch.load(io.BytesIO(real), weights_only=True)
                                                ["model"].items()}, "classes": ["a", "b", "c"]}),
        "code_pickle": pickle.dumps({"model": _Payload(marker)}),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    return train_tiny_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def work(tmp_path):
    return tmp_path


# ---------------------------------------------------------------- checkpoints and config.yaml
CHECKPOINT_KINDS = ("garbage", "truncated", "empty", "not_a_dict", "no_model_key", "wrong_model",
                    "wrong_classes_count", "code_pickle")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_unusable_best_pt_is_one_line_naming_it(trained, work, command, kind):
    run = clone_run(trained, work / "runs" / "x")
    marker = work / "code_ran"
    replace_file(run / "checkpoints" / "best.pt", broken_checkpoints((trained / "checkpoints/best.pt").read_bytes(),
                                                                      marker)[kind])
    before = snapshot(run)
    one_line(cli(*command_args(command, run, an_image(work / "a.png"), work)), 2, "best.pt")
    assert not marker.exists(), "a pickle in best.pt ran code"
    assert snapshot(run) == before
    assert not {"p.csv", "e.png", "m.pt", "m.pt.json"} & {p.name for p in work.iterdir()}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("model,needle", [("resnet34", "do not fit model 'resnet34'"),
                                          ("efficientnet_b0", "efficientnet_b0")])
def test_another_model_in_config_yaml_is_one_line(trained, work, command, model, needle):
    run = clone_run(trained, work / "runs" / "x")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("\n".join(f"model: {model}" if ln.startswith("model:") else ln
                                               for ln in text.splitlines()) + "\n")
    one_line(cli(*command_args(command, run, an_image(work / "a.png"), work)), 2, needle)


# ---------------------------------------------------------------- output paths
@contextlib.contextmanager
def read_only_folder(work: Path):
    """A read-only bind mount (root ignores file modes, so chmod would not make a folder read-only)."""
    src, dst = work / "ro_src", work / "ro"
    src.mkdir(exist_ok=True)
    dst.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(dst)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
    try:
        yield dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], capture_output=True)


def output_target(kind: str, work: Path, run: Path, suffix: str) -> tuple[Path, str]:
    """(a path an output must not be written to, what the error line says)."""
    if kind == "dev_full":
        return Path("/dev/full"), "not a"
    if kind == "folder":
        (work / "afolder").mkdir()
        return work / "afolder", "folder"
    if kind == "under_a_file":
        (work / "afile").write_text("x")
        return work / "afile" / f"out{suffix}", "which is a file"
    if kind == "best_pt":
        return run / "checkpoints" / "best.pt", "run's own files"
    if kind == "last_pt":
        return run / "checkpoints" / "last.pt", "run's own files"
    if kind == "config":
        return run / "config.yaml", "run's own files"
    if kind == "in_checkpoints":
        return run / "checkpoints" / f"new{suffix}", "run's own files"
    raise AssertionError(kind)


OUTPUT_KINDS = ("dev_full", "folder", "under_a_file", "best_pt", "last_pt", "config", "in_checkpoints")


@pytest.mark.parametrize("command,suffix", [("predict", ".csv"), ("explain", ".png"), ("export", ".pt")])
@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_unwritable_or_forbidden_out_is_refused_before_loading(trained, work, monkeypatch, command, suffix, kind):
    run = clone_run(trained, work / "runs" / "x")
    target, needle = output_target(kind, work, run, suffix)
    before = snapshot(run)
    _no_model_or_data(monkeypatch)
    args = command_args(command, run, an_image(work / "a.png"), work)
    one_line(cli(*args[:-1], target), 2, "--out", needle)
    assert snapshot(run) == before


@pytest.mark.parametrize("command,suffix", [("predict", ".csv"), ("explain", ".png"), ("export", ".pt")])
def test_out_in_a_read_only_folder_is_one_line(trained, work, command, suffix):
    with read_only_folder(work) as ro:
        args = command_args(command, trained, an_image(work / "a.png"), work)
        one_line(cli(*args[:-1], ro / f"out{suffix}"), 2, "--out", "cannot write in folder", "Read-only")


@pytest.mark.parametrize("kind,needle", [("dev_full", "not a folder"), ("a_file", "not a folder"),
                                         ("under_a_file", "which is a file"), ("read_only", "Read-only")])
def test_cam_folder_that_cannot_be_written_is_one_line(trained, work, kind, needle):
    image = an_image(work / "a.png")
    with contextlib.ExitStack() as stack:
        if kind == "dev_full":
            cam = Path("/dev/full")
        elif kind == "a_file":
            cam = work / "afile"
            cam.write_text("x")
        elif kind == "under_a_file":
            (work / "afile").write_text("x")
            cam = work / "afile" / "cams"
        else:
            cam = stack.enter_context(read_only_folder(work)) / "cams"
            needle = "Read-only"
        one_line(cli("predict", trained, image, "--out", work / "p.csv", "--cam", cam), 2, "--cam", needle)
    assert not (work / "p.csv").exists()


def test_explain_out_must_be_a_png(trained, work):
    one_line(cli("explain", trained, an_image(work / "a.png"), "--out", work / "e.txt"), 2, "e.txt", ".png")
    assert not (work / "e.txt").exists()


def test_eval_on_a_read_only_run_folder_is_one_line_before_scoring(trained, work, monkeypatch):
    clone_run(trained, work / "ro_src")
    with read_only_folder(work) as ro:
        _no_model_or_data(monkeypatch)
        one_line(cli("eval", ro, "--bootstrap", "0", "--no_plots"), 2, "cannot write in folder", "Read-only")


def test_full_disk_during_torchscript_export_is_one_line_and_leaves_nothing(trained, small_tmpfs):
    """The 45 MB model cannot fit the 2 MiB disk: one line (never the C++ abort, exit 134), no .tmp left."""
    result = cli("export", trained, "--format", "torchscript", "--out", small_tmpfs / "m.pt")
    one_line(result, 2, "m.pt", "No space left")
    assert list(small_tmpfs.iterdir()) == []


# ---------------------------------------------------------------- output names (issue 28 point 6)
def test_export_formats_keep_their_own_metadata_and_json_is_never_the_model(trained, work):
    pytest.importorskip("onnxruntime")
    run = clone_run(trained, work / "runs" / "x")
    assert cli("export", run, "--format", "onnx").exit_code == 0
    assert cli("export", run, "--format", "torchscript").exit_code == 0
    exported = run / "export"
    assert sorted(p.name for p in exported.iterdir()) == ["model.onnx", "model.onnx.json", "model.pt",
                                                          "model.pt.json"]
    for name, fmt in (("model.onnx", "onnx"), ("model.pt", "torchscript")):
        meta = json.loads((exported / f"{name}.json").read_text())
        assert meta["format"] == fmt and meta["file"] == name
    torch.jit.load(str(exported / "model.pt"))  # the model, not its metadata
    one_line(cli("export", run, "--format", "torchscript", "--out", work / "m.json"), 2, "m.json", ".pt")
    assert not (work / "m.json").exists()


def test_predict_never_overwrites_silently_and_shows_a_table(trained, work):
    image = an_image(work / "scan_a.png")
    out = work / "p.csv"
    first = cli("predict", trained, image, "--out", out)
    assert first.exit_code == 0, first.output
    assert "predictions (first 1 of 1" in first.stdout and "scan_a.png" in first.stdout
    row = next(csv.DictReader(out.open()))
    shown_row = next(ln for ln in first.stdout.splitlines() if "scan_a.png" in ln)
    assert row["labels"] in shown_row and f"{float(row['p_' + row['labels']]):.3f}" in shown_row, shown_row
    content = out.read_bytes()
    one_line(cli("predict", trained, an_image(work / "other.png", 1), "--out", out), 2, "already exists",
             "--overwrite")
    assert out.read_bytes() == content
    again = cli("predict", trained, an_image(work / "other.png", 1), "--out", out, "--overwrite")
    assert again.exit_code == 0 and "replaced the previous file" in again.stdout
    assert "other.png" in out.read_text()


@pytest.mark.parametrize("which", ["image", "csv"])
def test_predict_out_onto_one_of_its_inputs_is_refused_even_with_overwrite(trained, work, which):
    image = an_image(work / "a.png")
    (work / "list.csv").write_text("path\na.png\n")
    target = image if which == "image" else work / "list.csv"
    before = target.read_bytes()
    one_line(cli("predict", trained, work / "list.csv", image, "--out", target, "--overwrite"), 2, "is one of the inputs")
    assert target.read_bytes() == before


def test_predict_with_no_readable_file_exits_2_and_writes_nothing(trained, work):
    (work / "bad.png").write_bytes(b"not an image")
    result = cli("predict", trained, work / "bad.png", work / "missing.png", "--out", work / "p.csv")
    one_line(result, 2, "none of the 2 file(s) could be read")
    assert "bad.png: not an image" in result.stdout and "missing.png: missing file" in result.stdout
    assert not (work / "p.csv").exists()


# ---------------------------------------------------------------- csv of paths, file names
CSV_CASES = {
    "latin1": (b"path\n" + "r\xe9sum\xe9.png\n".encode("latin-1"), "not UTF-8"),
    "nul_byte": (b"path\na.png\nb\x00.png\n", "line 3: holds a NUL byte"),
    "huge_field": (b"path\n\"" + b"x" * 200_000 + b"\"\n", "unreadable csv"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_broken_csv_of_paths_is_one_line_before_the_model_and_writes_nothing(trained, work, monkeypatch, case):
    content, needle = CSV_CASES[case]
    an_image(work / "a.png")
    (work / "list.csv").write_bytes(content)
    _no_model_or_data(monkeypatch)
    one_line(cli("predict", trained, work / "list.csv", "--out", work / "p.csv"), 2, "list.csv", needle)
    assert sorted(p.name for p in work.iterdir()) == ["a.png", "list.csv"]


def test_non_utf8_file_names_are_predicted_and_written_as_utf8(trained, work):
    raw = os.fsdecode(b"r\xe9gion.png")
    an_image(work / "imgs" / raw)
    out = work / "p.csv"
    for args in ([work / "imgs" / raw], [work / "imgs"]):
        result = cli("predict", trained, *args, "--out", out, "--overwrite")
        assert result.exit_code == 0, (result.output, repr(result.exception))
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert len(rows) == 1 and rows[0]["path"].endswith("r\\xe9gion.png") and not rows[0]["error"]


# ---------------------------------------------------------------- devices and arguments (issue 28 point 8)
def _no_model_or_data(monkeypatch):
    """Make the slow parts fail loudly: a check that passes only after them is caught here."""
    def slow(*_a, **_k):
        raise AssertionError("model or data loaded before the arguments were checked")

    monkeypatch.setattr("core.evaluation.run_model.build_model", slow)
    monkeypatch.setattr("core.evaluation.run_model.load_checkpoint", slow)
    monkeypatch.setattr("core.data.load_dataset", slow)


DEVICES = ["tpu", "cuda:x", "gpu0", "cuda:-1", "", "mps!"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"])


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("device", DEVICES)
def test_unusable_device_is_one_line_before_the_model(trained, work, monkeypatch, command, device):
    _no_model_or_data(monkeypatch)
    args = command_args(command, trained, an_image(work / "a.png"), work)
    one_line(cli(*args, "--device", device), 2, "device")


@pytest.mark.parametrize("args,needle", [
    (["eval", "{run}", "--split", "tset"], "split: 'tset' is not one of val, test"),
    (["eval", "{run}", "--bootstrap", "1000000000000"], "--bootstrap: at most 10000"),
    (["eval", "{run}", "--thresholds", "magic"], "threshold method: 'magic'"),
    (["eval", "{run}", "--sensitivity", "1.5"], "--sensitivity"),
    (["explain", "{run}", "{image}", "--class", "X"], "class: 'X' is not one of Normal, Abnormal"),
    (["explain", "{run}", "{work}/missing.png"], "missing.png: missing file"),
    (["export", "{run}", "--format", "tflite"], "--format: 'tflite'"),
])
def test_arguments_are_checked_before_model_and_data(trained, work, monkeypatch, args, needle):
    image = an_image(work / "a.png")
    _no_model_or_data(monkeypatch)
    argv = [a.format(run=trained, image=image, work=work) for a in args]
    one_line(cli(*argv), 2, needle)


def test_a_data_dir_that_does_not_exist_is_one_line_before_the_scan(trained, work, monkeypatch):
    run = clone_run(trained, work / "runs" / "x")
    text = (run / "config.yaml").read_text().replace("dataset: synthetic", "dataset: folder")
    (run / "config.yaml").write_text(text)
    _no_model_or_data(monkeypatch)
    one_line(cli("eval", run, "--data_dir", work / "nowhere"), 2, "data_dir", "nowhere")


def test_generated_csv_of_paths_never_tracebacks_or_leaves_a_partial_file(trained, tmp_path_factory):
    """Hypothesis: any bytes as the csv of paths -> predictions, or one line and exit 2 with no output file."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rows = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"a.png", b"../a.png", b"/", b"\xff\xfe",
                                                                       b"\x00", b'"', b"path"])), max_size=6)

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(rows)
    def check(lines):
        work = tmp_path_factory.mktemp("gen")
        an_image(work / "a.png")
        (work / "list.csv").write_bytes(b"\n".join(lines))
        result = cli("predict", trained, work / "list.csv", "--out", work / "p.csv")
        if result.exit_code == 0:
            assert len(list(csv.DictReader((work / "p.csv").open(encoding="utf-8")))) >= 1
        else:
            one_line(result, 2)
            assert not (work / "p.csv").exists() and not list(work.glob(".*.tmp*"))

    check()


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_gpu_index_the_machine_lacks_is_one_line(trained, work, monkeypatch, command):
    """cuda:3 on a 1-GPU machine failed only when the model moved ("invalid device ordinal", a traceback)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    _no_model_or_data(monkeypatch)
    args = command_args(command, trained, an_image(work / "a.png"), work)
    one_line(cli(*args, "--device", "cuda:3"), 2, "--device", "1 GPU(s)")


def test_a_class_name_never_becomes_a_path_for_the_default_overlay(trained, work):
    """Without a RunStarted record the class is checked after the output path: it must not create folders."""
    run = clone_run(trained, work / "runs" / "x")
    (run / "metrics.jsonl").write_text("")
    one_line(cli("explain", run, an_image(work / "a.png"), "--class", "../../../escaped/x"), 2, "class")
    assert not list(work.rglob("escaped")) and not list(work.rglob("a_..")), "the class name made folders"
