"""COVIDx label files in every layout (3, 4, 5 fields; 3-class and binary) and the real images."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainConfig
from core.data import load_dataset
from core.data.base import DataError
from core.data.covidx import find_label_files, parse_label_file

from conftest import FIXTURES
COVIDX = FIXTURES / "covidx"
FORMATS = FIXTURES / "label_formats"


def config(data_dir: Path, cache_dir: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset="covidx", data_dir=str(data_dir), img_size=32, cache_dir=str(cache_dir), **kw)


def all_ids(bundle) -> list[str]:
    return [i for t in (bundle.train, bundle.val, bundle.test) if t is not None for i in t.ids]


@pytest.mark.real_data
@pytest.mark.parametrize("name, fields, labels, sources", [
    ("test_COVIDx.txt", {3: 200}, {"normal": 95, "pneumonia": 95, "COVID-19": 10}, {"unknown": 200}),
    ("test_COVIDx5.txt", {3: 97, 4: 103}, {"normal": 49, "pneumonia": 51, "COVID-19": 100},
     {"cohen": 42, "fig1": 11, "actmed": 33, "sirm": 17, "unknown": 97}),
    ("test_COVIDx7A.txt", {3: 97, 4: 86, 5: 17}, {"normal": 49, "pneumonia": 51, "COVID-19": 100},
     {"cohen": 42, "fig1": 11, "actmed": 33, "sirm": 17, "unknown": 97}),
    ("train_COVIDx8A.txt", {4: 175, 5: 25}, {"pneumonia": 51, "COVID-19": 124, "normal": 25},
     {"cohen": 51, "fig1": 24, "actmed": 25, "sirm": 25, "ricord": 25, "rsna": 50}),
    ("train_COVIDx9A.txt", {4: 200}, {"pneumonia": 50, "COVID-19": 117, "normal": 33},
     {"cohen": 34, "fig1": 17, "actmed": 17, "sirm": 17, "ricord": 17, "rsna": 34 + 32,  # 'rnsa' typo merged
      "stonybrook": 16, "bimcv": 16}),
    ("test_COVIDx9B.txt", {4: 200}, {"positive": 100, "negative": 100}, {"ricord": 100, "rsna": 100}),
])
def test_every_layout_parses_like_the_readme_says(name, fields, labels, sources):
    parsed = parse_label_file(FORMATS / name)
    assert parsed.problems == []
    assert Counter(r.fields for r in parsed.rows) == fields
    assert Counter(r.raw_label for r in parsed.rows) == labels
    assert Counter(r.source for r in parsed.rows) == sources
    assert parsed.binary == ("positive" in labels)


@pytest.mark.real_data
def test_five_field_lines_keep_the_space_in_the_patient_id():
    rows = [r for r in parse_label_file(FORMATS / "test_COVIDx7A.txt").rows if r.fields == 5]
    first = rows[0]
    assert (first.patient, first.filename, first.label, first.source) == ("COVID 70", "COVID(70).png", "COVID", "sirm")


def test_labels_map_case_insensitively(tmp_path):
    (tmp_path / "l.txt").write_text("p1 a.png Covid-19 x\np2 b.png NORMAL\np3 c.png PneumoNIA src\n")
    assert [r.label for r in parse_label_file(tmp_path / "l.txt").rows] == ["COVID", "Normal", "Pneumonia"]


def test_unmapped_and_malformed_rows_are_reported_not_guessed(tmp_path):
    (tmp_path / "l.txt").write_text("p1 a.png COVID-19 cohen\np2 b.png ARDS cohen\nonly_two fields\n"
                                    "p4 d.png tuberculosis\np5 e.png normal rsna\n")
    parsed = parse_label_file(tmp_path / "l.txt")
    assert [r.filename for r in parsed.rows] == ["a.png", "e.png"]
    assert [(n, why) for n, _, why in parsed.problems] == [
        (2, "unmapped label 'ARDS'"), (3, "2 field(s), need at least 3 (patient file label)"),
        (4, "unmapped label 'tuberculosis'")]


def test_mixing_binary_and_three_class_labels_is_an_error(tmp_path):
    (tmp_path / "l.txt").write_text("p1 a.png COVID-19 cohen\np2 b.png negative rsna\n")
    with pytest.raises(DataError, match=r"l.txt line 2: label 'negative' mixes binary"):
        parse_label_file(tmp_path / "l.txt")


@pytest.mark.real_data
def test_default_label_file_is_the_newest_three_class_one():
    train, val, test = find_label_files(COVIDX, None)
    assert train.name == "train_COVIDx9A.txt" and val is None and test is None


@pytest.mark.real_data
@pytest.mark.parametrize("label_file, n, counts", [
    ("labels/train_COVIDx4.txt", 47, [47, 0, 0]),
    ("labels/train_COVIDx5.txt", 51, [51, 0, 0]),
    ("labels/train_COVIDx7A.txt", 51, [51, 0, 0]),
    ("labels/train_COVIDx8A.txt", 6, [6, 0, 0]),
    ("labels/train_COVIDx9A.txt", 6, [6, 0, 0]),
])
def test_three_class_files_with_real_images(tmp_path, label_file, n, counts):
    b = load_dataset(config(COVIDX, tmp_path, label_file=label_file))
    assert b.classes == ["COVID", "Normal", "Pneumonia"] and not b.multi_label and b.skipped == []
    assert len(all_ids(b)) == n
    assert (b.class_counts("train") + b.class_counts("val")).tolist() == counts
    assert b.domain_names == ["cohen"] and b.train.targets.dtype == np.int64


@pytest.mark.real_data
@pytest.mark.parametrize("label_file, n, negatives", [
    ("labels/train_COVIDx6.txt", 55, 4), ("labels/train_COVIDx7B.txt", 55, 4),
    ("labels/train_COVIDx8B.txt", 10, 4), ("labels/train_COVIDx9B.txt", 10, 4),
])
def test_binary_files_become_non_covid_vs_covid(tmp_path, label_file, n, negatives):
    b = load_dataset(config(COVIDX, tmp_path, label_file=label_file))
    assert b.classes == ["Non-COVID", "COVID"]
    assert (b.class_counts("train") + b.class_counts("val")).tolist() == [negatives, n - negatives]
    assert any("negative -> Non-COVID" in note for note in b.notes)
    ids = dict(zip(b.train.ids + b.val.ids, np.concatenate([b.train.targets, b.val.targets])))
    assert ids["ARDSSevere.png"] == 0  # 'negative' in the file


@pytest.mark.real_data
def test_validation_is_split_by_patient_and_stratified(tmp_path):
    b = load_dataset(config(COVIDX, tmp_path, label_file="labels/train_COVIDx6.txt", val_fraction=0.2))
    assert not set(b.train.patients) & set(b.val.patients)
    assert b.class_counts("val")[0] >= 1  # one of the 4 negative images is held out, not none
    assert b.class_counts("train")[0] >= 1


@pytest.mark.real_data
def test_official_folder_layout_with_train_test_and_unmapped_rows(tmp_path):
    root = tmp_path / "covidx"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    lines = (COVIDX / "labels" / "train_COVIDx6.txt").read_text().splitlines()
    train_lines, test_lines = lines[:40], lines[40:]
    for line in lines:
        name = line.split()[1]
        dest = root / ("train" if line in train_lines else "test")
        shutil.copy(COVIDX / "images" / name, dest / name)
    (root / "train_COVIDx6.txt").write_text("\n".join(train_lines + ["99 extra.png ARDS cohen"]) + "\n")
    (root / "test_COVIDx6.txt").write_text("\n".join(test_lines) + "\n")
    b = load_dataset(config(root, tmp_path / "cache"))
    assert len(b.train) + len(b.val) == 40 and len(b.test) == 15
    assert any("1 row(s) skipped, unmapped or malformed (e.g. line 41: unmapped label 'ARDS')" in n for n in b.notes)
    assert any("unmapped label 'ARDS'" in reason for _, reason in b.skipped)


@pytest.mark.real_data
def test_label_file_without_images_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"test_COVIDx5.txt: resolves to zero usable images \(200 rows"):
        load_dataset(config(FORMATS, tmp_path, label_file="test_COVIDx5.txt"))


@pytest.mark.real_data
def test_multi_label_is_rejected(tmp_path):
    with pytest.raises(DataError, match="covidx is single-label"):
        load_dataset(config(COVIDX, tmp_path, multi_label=True))
