"""Dataset statistics (dict + text) and the `medcls data stats` / `medcls prepare` commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from core.config import TrainConfig
from core.data.base import ArrayTable, DatasetBundle
from core.data.records import load_labels_only
from core.data.stats import compute_stats, format_stats
from medcls_tui.cli_data import data_app, prepare_command

from conftest import FIXTURES
NIH = FIXTURES / "nih_chestxray14"
README_ALL = {"Atelectasis": 45, "Cardiomegaly": 28, "Effusion": 43, "Infiltration": 64, "Mass": 35, "Nodule": 45,
              "Pneumonia": 16, "Pneumothorax": 22, "Consolidation": 42, "Edema": 9, "Emphysema": 20,
              "Fibrosis": 28, "Pleural_Thickening": 36, "Hernia": 9}


def small_bundle(multi_label: bool = False) -> DatasetBundle:
    images = np.zeros((8, 4, 4), dtype=np.uint8)
    if multi_label:
        targets = np.array([[1, 0], [0, 1], [0, 0], [0, 1], [1, 0], [0, 0], [0, 1], [1, 1]], dtype=np.float32)
    else:
        targets = np.array([0, 1, 0, 2, 0, 1, 0, 2])
    domains = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # class 2 only in domain 1 (site B)
    patients = ["p0", "p1", "p2", "p3", "p1", "p5", "p6", "p7"]  # p1 in train and val
    full = ArrayTable(images, targets, domains, patients=patients)
    classes = ["x", "y"] if multi_label else ["normal", "covid", "pneumonia"]
    return DatasetBundle(name="toy", classes=classes, multi_label=multi_label, train=full.subset([0, 1, 2, 3]),
                         val=full.subset([4, 5]), test=full.subset([6, 7]), domain_names=["siteA", "siteB"],
                         skipped=[("bad.png", "empty file (0 bytes)")], notes=["a note"])


def test_counts_and_warnings_single_label():
    stats = compute_stats(small_bundle())
    json.dumps(stats)  # plain data only
    assert stats["splits"]["train"]["per_class"] == {"normal": 2, "covid": 1, "pneumonia": 1}
    assert stats["splits"]["val"]["per_domain"] == {"siteA": 2, "siteB": 0}
    assert stats["splits"]["test"]["patients"] == 2
    assert stats["total"]["per_class"] == {"normal": 4, "covid": 2, "pneumonia": 2}
    assert stats["class_by_domain"]["siteB"] == {"normal": 2, "covid": 0, "pneumonia": 2}
    assert stats["skipped"] == {"count": 1, "examples": [["bad.png", "empty file (0 bytes)"]]}
    warnings = stats["warnings"]
    assert "patient leakage: 1 patient(s) in both train and val (e.g. p1)" in warnings
    assert any(w.startswith("class 'covid' occurs only in domain 'siteA'") for w in warnings)
    assert any(w.startswith("class 'pneumonia' occurs only in domain 'siteB'") for w in warnings)
    assert not any("'normal' occurs only" in w for w in warnings)
    assert "class 'pneumonia' has no validation images: its AUROC is undefined" in warnings
    assert "pos_weight" not in stats


def test_multi_label_positives_no_finding_and_pos_weight():
    stats = compute_stats(small_bundle(multi_label=True))
    assert stats["splits"]["train"]["per_class"] == {"x": 1, "y": 2}
    assert stats["splits"]["val"]["no_finding"] == 1 and stats["total"]["no_finding"] == 2
    assert stats["pos_weight"] == {"x": 3.0, "y": 1.0}  # n_neg / n_pos: 3/1 and 2/2


def test_format_stats_lines():
    lines = format_stats(compute_stats(small_bundle()))
    text = "\n".join(lines)
    assert lines[0] == "toy: single-label, 3 classes, 2 domain(s), 8 images"
    assert any(line.split() == ["images", "4", "2", "2", "8"] for line in lines)
    assert any(line.split() == ["normal", "2", "1", "1", "4"] for line in lines)
    assert "skipped: 1 image(s), e.g. bad.png: empty file (0 bytes)" in text
    assert "warning: patient leakage" in text and "note: a note" in text


@pytest.mark.real_data
def test_nih_fixture_statistics_without_decoding():
    config = TrainConfig(dataset="nih", data_dir=str(NIH), img_size=32)
    bundle = load_labels_only(config)
    stats = compute_stats(bundle)
    assert stats["total"]["images"] == 319 and stats["total"]["per_class"] == README_ALL
    assert stats["total"]["no_finding"] == 53 and stats["total"]["per_domain"] == {"AP": 53, "PA": 266}
    assert stats["splits"]["test"]["patients"] == 37
    assert not any(w.startswith("patient leakage") for w in stats["warnings"])
    assert stats["pos_weight"]["Hernia"] > stats["pos_weight"]["Infiltration"] > 1


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    app.command("prepare")(prepare_command)
    return app


@pytest.mark.real_data
def test_cli_stats_json_and_text():
    runner = CliRunner()
    result = runner.invoke(cli(), ["data", "stats", "--dataset", "nih", "--data_dir", str(NIH), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["total"]["images"] == 319
    text = runner.invoke(cli(), ["data", "stats", "--dataset", "nih", "--data_dir", str(NIH), "--no_multi_label"])
    assert text.exit_code == 0 and "nih: single-label, 2 classes" in text.output


@pytest.mark.real_data
def test_cli_prepare_builds_the_cache_then_training_reuses_it(tmp_path):
    runner = CliRunner()
    args = ["--dataset", "covidx", "--data_dir", str(FIXTURES / "covidx"), "--img_size", "32",
            "--cache_dir", str(tmp_path)]
    result = runner.invoke(cli(), ["prepare", *args])
    assert result.exit_code == 0, result.output
    assert "caching covidx images at 32px: 6/6" in result.output and "0 image(s) skipped" in result.output
    assert (tmp_path / "covidx_32px" / "manifest.json").is_file()
    again = runner.invoke(cli(), ["data", "stats", "--decode", *args])
    assert again.exit_code == 0 and "valid, reused" in again.output


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli(), ["prepare", "--dataset", "nih", "--data_dir", str(tmp_path)])
    assert result.exit_code == 2 and "error:" in result.output and "no NIH label file" in result.output
    result = CliRunner().invoke(cli(), ["data", "stats", "--img_size", "4"])
    assert result.exit_code == 2 and "img_size: must be >= 16" in result.output
