"""Issue 23: one decision rule from eval to the exported model, thresholds bound to their checkpoint,
and validation's precision in eval. Real tiny runs (a binary synthetic run with a test split, a
3-class folder run), driven through the CLI."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from core.training.trainer import Trainer
from core.evaluation import thresholds as thr
from core.evaluation.run_model import load_run_model
from core.config.resolve import resolve_config
from medcls_tui.cli import app

from conftest import TINY

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("binary")
    trainer = Trainer(resolve_config({**TINY, "synthetic_task": "binary", "output_dir": str(out)}, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished"
    return trainer, summary, Path(trainer.run_dir)


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory, one_torch_thread):
    """A folder dataset of three classes (no test split: eval scores val)."""
    from core.data.synthetic import render_phantoms

    root = tmp_path_factory.mktemp("three")
    images, targets, _, _ = render_phantoms(120, 32, seed=3, task="multiclass")
    names = ["Effusion", "Normal", "Opacity"]
    for i, (img, t) in enumerate(zip(np.asarray(images), np.asarray(targets))):
        folder = root / "data" / names[int(t) % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"p{i:03d}.png")
    trainer = Trainer(resolve_config({**TINY, "dataset": "folder", "data_dir": str(root / "data"),
                                      "val_fraction": 0.3, "output_dir": str(root / "runs")}, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished"
    return trainer, summary, Path(trainer.run_dir)


def _images_of(table, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(table)):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(table.image(i)).save(p)
        paths.append(p)
    return paths


def _predict_labels(run: Path, paths: list[Path], out: Path, *extra) -> list[str]:
    listing = out.with_name("paths.csv")
    listing.write_text("path\n" + "\n".join(str(p) for p in paths) + "\n")
    result = cli("predict", run, listing, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return [r["labels"] for r in csv.DictReader(out.open())]


def _onnx_labels(run: Path, paths: list[Path], tmp: Path) -> tuple[list[str], dict]:
    """What an external consumer does: the exported graph + the JSON's preprocessing and decision rule."""
    import onnxruntime as ort

    from core.data.decode import load_resized
    from core.evaluation.decision import apply_described

    model = tmp / "m.onnx"
    result = cli("export", run, "--format", "onnx", "--out", model)
    assert result.exit_code == 0, result.output
    meta = json.loads(model.with_name(model.name + ".json").read_text())
    pre = meta["input"]
    x = np.stack([load_resized(p, pre["size"][0]) for p in paths]).astype(np.float32)[:, None] / 255.0
    x = np.repeat(x, 3, axis=1)
    x = (x - np.array(pre["mean"], dtype=np.float32)[None, :, None, None]) / \
        np.array(pre["std"], dtype=np.float32)[None, :, None, None]
    probs = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    return ["|".join(labels) for labels in apply_described(probs, meta["classes"], meta["decision"])], meta


def _cm_from_labels(labels: list[str], truth, classes) -> list[list[int]]:
    cm = np.zeros((len(classes), len(classes)), dtype=int)
    for t, lab in zip(truth, labels):
        cm[int(t), classes.index(lab)] += 1
    return cm.tolist()


def test_binary_eval_predict_and_onnx_apply_the_same_threshold(binary_run, tmp_path):
    """A binary run's threshold (not 0.5) is applied by eval's confusion matrix, predict and an ONNX
    consumer following the export JSON: the same label for every test image."""
    trainer, _, run = binary_run
    bundle = trainer.bundle
    rm = load_run_model(run, "best")
    paths = _images_of(bundle.test, tmp_path / "test")
    from core.evaluation.run_model import predict_table

    p1 = predict_table(rm.model, rm.normalize, bundle.test, False)[:, 1]
    t = float(np.sort(p1)[len(p1) // 2])  # a median threshold: labels differ from argmax for some images
    assert ((p1 >= t) != (p1 >= 0.5)).any() or ((p1 >= t) != (p1 > 1 - p1)).any()
    digest = thr.checkpoint_digest(run / "checkpoints" / "best.pt")
    thr.save_thresholds(run, {bundle.classes[0]: None, bundle.classes[1]: t}, "youden", None, "best", digest,
                        "binary_threshold")
    result = cli("eval", run, "--split", "test", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval_test.json").read_text())
    predicted = _predict_labels(run, paths, tmp_path / "pred.csv")
    consumer, meta = _onnx_labels(run, paths, tmp_path)
    assert meta["decision"]["rule"] == "binary_threshold"
    assert meta["decision"]["thresholds_applied"] == {bundle.classes[1]: t}
    assert predicted == consumer
    assert report["confusion_matrix"] == _cm_from_labels(predicted, bundle.test.targets, bundle.classes)
    # the sensitivity eval reports is the one of that decision
    cm = np.array(report["confusion_matrix"])
    assert report["per_class"][bundle.classes[1]]["sensitivity"]["value"] == pytest.approx(cm[1, 1] / cm[1].sum())


def test_three_class_eval_predict_and_onnx_take_the_argmax(three_class_run, tmp_path):
    """3 single-label classes: argmax everywhere, per-class sensitivities of that argmax decision."""
    trainer, _, run = three_class_run
    bundle = trainer.bundle
    assert len(bundle.classes) == 3
    paths = _images_of(bundle.val, tmp_path / "val")
    result = cli("eval", run, "--split", "val", "--thresholds", "youden", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    # per-class values in the file (hand-edited, or from an older medcls) never change the argmax decision
    entry = thr.load_thresholds(run, "best")
    thr.save_thresholds(run, {c: 0.2 for c in bundle.classes}, "youden", None, "best", entry["digest"], "argmax")
    result = cli("eval", run, "--split", "val", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval_val.json").read_text())
    predicted = _predict_labels(run, paths, tmp_path / "pred.csv")
    consumer, meta = _onnx_labels(run, paths, tmp_path)
    assert meta["decision"]["rule"] == "argmax" and predicted == consumer
    assert report["confusion_matrix"] == _cm_from_labels(predicted, bundle.val.targets, bundle.classes)
    cm = np.array(report["confusion_matrix"])
    for k, name in enumerate(bundle.classes):
        entry = report["per_class"][name]
        assert entry["threshold"] is None
        assert entry["sensitivity"]["value"] == pytest.approx(cm[k, k] / cm[k].sum())
        assert entry["specificity"]["value"] == pytest.approx(
            (cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]) / (cm.sum() - cm[k].sum()))


def test_thresholds_are_stored_per_checkpoint_and_checked_by_digest(binary_run, tmp_path):
    _, _, src = binary_run
    run = tmp_path / src.name
    shutil.copytree(src, run)
    best_before = thr.load_thresholds(run, "best")
    assert best_before["digest"] == thr.checkpoint_digest(run / "checkpoints" / "best.pt")
    # predict on last: only best's thresholds exist -> refused, naming both
    img = _images_of(_table(binary_run), tmp_path / "imgs")[:2]
    refused = cli("predict", run, *img, "--checkpoint", "last", "--out", tmp_path / "p.csv")
    assert refused.exit_code == 2 and "best.pt, not on last.pt" in refused.output
    assert "--checkpoint last --thresholds youden" in refused.output and "Traceback" not in refused.output
    # eval --checkpoint last chooses last's own, never touching best's
    result = cli("eval", run, "--split", "val", "--checkpoint", "last", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    assert thr.load_thresholds(run, "best") == best_before
    last = thr.load_thresholds(run, "last")
    assert last["digest"] == thr.checkpoint_digest(run / "checkpoints" / "last.pt")
    assert json.loads((run / "eval_val.json").read_text())["thresholds_info"]["checkpoint"] == "last"
    assert cli("predict", run, *img, "--checkpoint", "last", "--out", tmp_path / "p.csv").exit_code == 0
    # thresholds chosen on other weights (a retrain rewrote best.pt): predict/export refuse, eval re-chooses
    data = json.loads((run / "thresholds.json").read_text())
    data["checkpoints"]["best"]["digest"] = "0" * 64
    (run / "thresholds.json").write_text(json.dumps(data))
    for args in (("predict", run, *img, "--out", tmp_path / "p2.csv"), ("export", run, "--out", tmp_path / "m.onnx")):
        bad = cli(*args)
        assert bad.exit_code == 2 and "chosen on other weights" in bad.output, bad.output
    assert cli("eval", run, "--split", "val", "--bootstrap", "0", "--no_plots").exit_code == 0
    assert thr.load_thresholds(run, "best")["digest"] == best_before["digest"]
    # the old one-checkpoint layout is still read
    (run / "thresholds.json").write_text(json.dumps({"method": "f1", "checkpoint": "best", "chosen_on": "val",
                                                     "thresholds": best_before["thresholds"]}))
    assert thr.load_thresholds(run, "best")["method"] == "f1" and thr.load_thresholds(run, "last") is None


def _table(binary_run):
    return binary_run[0].bundle.test


TAMPERED = [
    ("nan", '{"checkpoints": {"best": {"thresholds": {"Normal": null, "Abnormal": NaN}}}}', "class 'Abnormal'"),
    ("inf", '{"checkpoints": {"best": {"thresholds": {"Abnormal": Infinity}}}}', "class 'Abnormal'"),
    ("neg", '{"checkpoints": {"best": {"thresholds": {"Abnormal": -5}}}}', "class 'Abnormal'"),
    ("big", '{"checkpoints": {"best": {"thresholds": {"Abnormal": 7.0}}}}', "class 'Abnormal'"),
    ("bool", '{"checkpoints": {"best": {"thresholds": {"Abnormal": true}}}}', "class 'Abnormal'"),
    ("str", '{"checkpoints": {"best": {"thresholds": {"Abnormal": "0.3"}}}}', "class 'Abnormal'"),
    ("nested", '{"checkpoints": {"best": {"thresholds": {"Abnormal": {"v": 0.3}}}}}', "class 'Abnormal'"),
    ("old-nan", '{"method": "youden", "thresholds": {"Abnormal": NaN}}', "class 'Abnormal'"),
    ("latin1", b'{"checkpoints": {"best": {"thresholds": {"Abn\xe9rmal": 0.3}}}}', "not UTF-8"),
    ("array", "[1, 2]", "must hold an object"),
    ("folder", None, "found a folder"),
]


@pytest.mark.parametrize("name, content, expected", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampered_thresholds_are_one_line_and_repaired_by_youden(binary_run, tmp_path, name, content, expected):
    _, _, src = binary_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    target = run / "thresholds.json"
    target.unlink()
    if content is None:
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    img = tmp_path / "x.png"
    Image.fromarray(binary_run[0].bundle.test.image(0)).save(img)
    for args in (("predict", run, img, "--out", tmp_path / "p.csv"), ("export", run, "--out", tmp_path / "m.onnx"),
                 ("eval", run, "--split", "val", "--bootstrap", "0", "--no_plots")):
        result = cli(*args)
        assert result.exit_code == 2, (args[0], result.output)
        assert "thresholds.json" in result.output and expected in result.output, result.output
        assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m.onnx.json").exists()
    repair = cli("eval", run, "--split", "val", "--thresholds", "youden", "--bootstrap", "0", "--no_plots")
    if content is None:  # a folder cannot be overwritten: one line saying so
        assert repair.exit_code == 2 and "found a folder" in repair.output and "Traceback" not in repair.output
    else:
        assert repair.exit_code == 0, repair.output
        assert thr.load_thresholds(run, "best")["method"] == "youden"
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_summary_val_auroc_equals_eval_val_on_the_last_checkpoint(binary_run):
    """Validation (torchmetrics, the engine's precision) and `eval --split val` (numpy) give the same
    macro AUROC for the weights of the last epoch."""
    _, summary, run = binary_run
    result = cli("eval", run, "--split", "val", "--checkpoint", "last", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval_val.json").read_text())
    assert report["macro"]["auroc"]["value"] == pytest.approx(summary["val_auroc"], abs=1e-6)


def test_predict_out_json_suffix_writes_json(binary_run, tmp_path):
    trainer, _, run = binary_run
    img = _images_of(trainer.bundle.test, tmp_path / "imgs")[:2]
    out = tmp_path / "x.json"
    result = cli("predict", run, *img, "--out", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and set(rows[0]["probabilities"]) == set(trainer.bundle.classes)
    assert cli("predict", run, *img, "--out", tmp_path / "y.json", "--format", "csv").exit_code == 0
    assert (tmp_path / "y.json").read_text().startswith("path,")


def test_export_parity_beyond_tolerance_fails_with_exit_1(binary_run, tmp_path, monkeypatch):
    import core.evaluation.export as export

    _, _, run = binary_run
    monkeypatch.setattr(export, "_export_onnx", lambda wrapper, example, check:
                        (b"onnx bytes", wrapper(check) + torch.tensor(0.01)))
    result = cli("export", run, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "parity check failed" in result.output and "1.00e-02" in result.output
    assert json.loads((tmp_path / "m.onnx.json").read_text())["parity_ok"] is False
