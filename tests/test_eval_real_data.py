"""Acceptance on the real NIH ChestX-ray14 and COVIDx fixtures: train briefly, eval with intervals,
predict, explain one image, export to ONNX and check it against PyTorch with onnxruntime.

Marked real_data: skipped with one line by conftest's fixture helper when the fixtures are absent."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import FIXTURES
from medcls_tui.cli import app

runner = CliRunner()
DATASETS = {"nih": "nih_chestxray14", "covidx": "covidx"}
EXTRA = {"nih": [], "covidx": ["--label_file", "labels/train_COVIDx6.txt", "--val_fraction", "0.5"]}
"""COVIDx here has no test split and 4 negatives (binary file): half the patients go to val so it has both."""


def fixtures_dir(name: str) -> Path:
    """One dataset's folder under the real fixtures (the real_data marker skips when they are absent)."""
    path = FIXTURES / name
    assert path.is_dir(), f"real-data fixture {path} missing from {FIXTURES}"
    return path


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_train_eval_predict_explain_export_on_real_fixtures(dataset, tmp_path, one_torch_thread):
    data = fixtures_dir(DATASETS[dataset])
    out = tmp_path / "runs"
    cli("train", "--dataset", dataset, "--data_dir", data, "--cache_dir", tmp_path / "cache", "--model", "resnet18",
        "--img_size", "32", "--epochs", "1", "--batch_size", "32", "--num_workers", "0", "--output_dir", out,
        "--run_name", "real", *EXTRA[dataset])
    run = out / "real"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] in ("finished", "early_stopped"), summary
    split = "test" if summary.get("test_n") else "val"
    text = cli("eval", run, "--split", split, "--bootstrap", "200")
    report = json.loads((run / f"eval_{split}.json").read_text())
    assert report["bootstrap"]["n"] == 200 and "macro" in text
    defined = [e for e in report["per_class"].values() if e["auroc"]["value"] is not None]
    assert defined and all(e["auroc"]["ci"] is None or e["auroc"]["ci"][0] <= e["auroc"]["value"]
                           <= e["auroc"]["ci"][1] for e in defined)
    if dataset == "nih":
        assert split == "test" and report["n"] == 41 and report["multi_label"]
        assert report["bootstrap"]["unit"] == "patient"  # NIH rows carry patient ids

    images = sorted(p for p in (data / "images").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:6]
    cli("predict", run, *images, "--out", tmp_path / "pred.csv")
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    assert len(rows) == 6 and not any(r["error"] for r in rows)

    cli("explain", run, images[0], "--out", tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 1000

    cli("export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["parity_max_abs_diff"] < 1e-4
    import onnxruntime as ort

    from core.evaluation.run_model import load_run_model

    rm = load_run_model(run, "best")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = (torch.sigmoid if rm.multi_label else lambda t: torch.softmax(t, -1))(rm.model(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})[0]
    assert float(np.abs(got - expected).max()) < 1e-4
