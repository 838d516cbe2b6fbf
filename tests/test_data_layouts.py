"""Every real-data loader on small files the tests write in the official layouts (tests/official_layouts.py),
so a clone without the real fixtures still covers NIH, COVIDx, VinBigData, DICOM and 16-bit PNG."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainConfig
from core.data import load_dataset
from core.data.covidx import parse_label_file
from core.data.decode import decode_gray, resize_square
from core.data.nih import FINDINGS, read_entries
from official_layouts import (
    radiograph,
    write_covidx,
    write_covidx_labels,
    write_dicom,
    write_nih,
    write_png,
    write_vinbigdata,
)


def cfg(dataset: str, root: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset=dataset, data_dir=str(root), img_size=32, cache_dir=str(root / "cache"), seed=0, **kw)


def by_id(bundle) -> dict:
    """image id -> (target, domain name, split) over every split."""
    out = {}
    for split in ("train", "val", "test"):
        table = getattr(bundle, split)
        if table is None:
            continue
        for i, image_id in enumerate(table.ids):
            out[Path(image_id).name] = (table.targets[i], bundle.domain_names[table.domains[i]], split)
    return out


# ---------------------------------------------------------------- NIH
def test_nih_official_layout_multi_label(tmp_path):
    layout = write_nih(tmp_path / "nih")
    b = load_dataset(cfg("nih", layout.root, multi_label=True))
    assert b.multi_label and b.classes == FINDINGS
    assert sorted(Path(f).name for f, _ in b.skipped) == layout.missing  # listed, not downloaded
    seen = by_id(b)
    assert set(seen) == set(layout.labels) - set(layout.missing)
    assert {n for n, (_, _, s) in seen.items() if s == "test"} == set(layout.test) - set(layout.missing)
    for name, (target, view, _) in seen.items():
        assert [FINDINGS[k] for k in np.flatnonzero(target)] == sorted(layout.labels[name], key=FINDINGS.index)
        assert view == layout.views[name]
    split_patients = {s: {layout.patients[n] for n, (_, _, sp) in seen.items() if sp == s} for s in ("train", "val", "test")}
    assert not split_patients["train"] & split_patients["val"] and not split_patients["test"] & split_patients["val"]
    assert len(split_patients["val"]) == round(0.1 * 9)  # val_fraction of the 9 train_val patients


def test_nih_header_and_single_label(tmp_path):
    layout = write_nih(tmp_path / "nih", missing=0)
    header_cells = (layout.root / "Data_Entry_2017_v2020.csv").read_text().splitlines()[0].split(",")
    assert len(header_cells) == 11
    rows = read_entries(layout.root / "Data_Entry_2017_v2020.csv")
    assert [r["image"] for r in rows] == list(layout.labels) and rows[0]["patient"] == "1"
    b = load_dataset(cfg("nih", layout.root, multi_label=False))
    assert b.classes == ["Normal", "Abnormal"]
    normal = sum(int((t.targets == 0).sum()) for t in (b.train, b.val, b.test))
    assert normal == sum(1 for f in layout.labels.values() if not f)


def test_nih_16bit_png_is_stretched_into_the_cache(tmp_path):
    layout = write_nih(tmp_path / "nih", missing=0, sixteen_bit=1)
    first = next(iter(layout.labels))
    path = next(layout.root.rglob(first))
    from PIL import Image

    assert Image.open(path).mode.startswith("I")  # a real 16-bit PNG on disk
    b = load_dataset(cfg("nih", layout.root, multi_label=True))
    table, i = next((t, t.ids.index(x)) for t in (b.train, b.val, b.test) for x in t.ids if Path(x).name == first)
    img = table.image(i)
    assert img.dtype == np.uint8 and img.shape == (32, 32) and img.max() > 200  # full 8-bit range, not 16-bit >> 8
    np.testing.assert_array_equal(img, resize_square(decode_gray(path), 32))


def test_nih_layout_trains_through_the_engine(tmp_path):
    """The data set reaches the model: one tiny multi-label epoch with BCE over the 14 findings."""
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    layout = write_nih(tmp_path / "nih", missing=0)
    flags = {"dataset": "nih", "data_dir": str(layout.root), "multi_label": True, "model": "resnet18",
             "img_size": 32, "epochs": 1, "batch_size": 4, "num_workers": 0, "max_steps_per_epoch": 2,
             "output_dir": str(tmp_path / "runs"), "run_name": "nih", "pretrained": False}
    summary = Trainer(resolve_config(flags, vram_gib=None)).fit()
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert set(summary["val_auroc_per_class"]) <= set(FINDINGS)


# ---------------------------------------------------------------- COVIDx
def test_covidx_three_four_and_five_field_lines_parse(tmp_path):
    path = tmp_path / "test_COVIDx7A.txt"
    write_covidx_labels(path, [(3, 0, "normal", ""), (3, 1, "pneumonia", ""), (4, 2, "COVID-19", "cohen"),
                               (4, 3, "pneumonia", "rnsa"), (5, 70, "COVID-19", "sirm")])
    parsed = parse_label_file(path)
    assert parsed.problems == [] and not parsed.binary
    assert Counter(r.fields for r in parsed.rows) == {3: 2, 4: 2, 5: 1}
    assert [r.label for r in parsed.rows] == ["Normal", "Pneumonia", "COVID", "Pneumonia", "COVID"]
    assert [r.source for r in parsed.rows] == ["unknown", "unknown", "cohen", "rsna", "sirm"]  # 'rnsa' typo merged
    five = parsed.rows[-1]
    assert (five.patient, five.filename) == ("COVID 70", "COVID(70).png")


def test_covidx_official_folders_three_class(tmp_path):
    root = tmp_path / "covidx"
    train = [(4, i, label, source) for i, (label, source) in enumerate(
        [("COVID-19", "cohen"), ("normal", "rsna"), ("pneumonia", "rsna"), ("COVID-19", "sirm")] * 3)]
    test = [(3, 50 + i, label, "") for i, label in enumerate(["normal", "COVID-19", "pneumonia"])]
    write_covidx(root, "9A", train, test)
    b = load_dataset(cfg("covidx", root))
    assert b.classes == ["COVID", "Normal", "Pneumonia"] and not b.multi_label and b.skipped == []
    assert len(b.train) + len(b.val) == 12 and len(b.test) == 3
    assert (b.class_counts("train") + b.class_counts("val")).tolist() == [6, 3, 3]
    assert sorted(b.domain_names) == ["cohen", "rsna", "sirm", "unknown"]


def test_covidx_binary_file_is_non_covid_vs_covid(tmp_path):
    root = tmp_path / "covidx"
    train = [(4, i, "positive" if i % 3 else "negative", "ricord") for i in range(9)]
    write_covidx(root, "9B", train, [(4, 90, "negative", "rsna"), (4, 91, "positive", "rsna")])
    b = load_dataset(cfg("covidx", root))
    assert b.classes == ["Non-COVID", "COVID"]
    assert (b.class_counts("train") + b.class_counts("val")).tolist() == [3, 6]
    assert any("negative -> Non-COVID" in note for note in b.notes)


# ---------------------------------------------------------------- VinBigData
READS = {
    "aa01": [("R1", 3, "Cardiomegaly"), ("R2", 3, "Cardiomegaly"), ("R3", 14, "No finding")],  # 2 of 3
    "aa02": [("R1", 8, "Nodule/Mass"), ("R2", 14, "No finding"), ("R3", 14, "No finding")],  # 1 of 3
    "aa03": [("R1", 14, "No finding"), ("R2", 14, "No finding"), ("R3", 14, "No finding")],
    "aa04": [("R4", 0, "Aortic enlargement"), ("R5", 0, "Aortic enlargement"), ("R6", 0, "Aortic enlargement")],
}


@pytest.mark.parametrize("rule, abnormal", [("any", {"aa01", "aa02", "aa04"}), ("majority", {"aa01", "aa04"})])
def test_vinbigdata_radiologist_consensus(tmp_path, rule, abnormal):
    write_vinbigdata(tmp_path / "vin", READS)
    b = load_dataset(cfg("vinbigdata", tmp_path / "vin", val_fraction=0.0, vin_consensus=rule))
    assert b.classes == ["Normal", "Abnormal"] and b.skipped == []
    assert {i for i, t in zip(b.train.ids, b.train.targets.tolist()) if t == 1} == abnormal


def test_vinbigdata_dicom_images(tmp_path):
    pytest.importorskip("pydicom")
    write_vinbigdata(tmp_path / "vin", READS, images="dicom")
    b = load_dataset(cfg("vinbigdata", tmp_path / "vin", val_fraction=0.0))
    assert len(b.train) == 4 and b.skipped == []
    dicom = tmp_path / "vin" / "train" / f"{b.train.ids[0]}.dicom"
    np.testing.assert_array_equal(b.train.image(0), resize_square(decode_gray(dicom), 32))
    assert b.train.image(0).std() > 10


# ---------------------------------------------------------------- DICOM and PNG decoding
def test_dicom_monochrome1_decodes_to_the_inverse_of_monochrome2(tmp_path):
    pytest.importorskip("pydicom")
    pixels = radiograph(7, size=40, bits=12)
    mono2 = decode_gray(write_dicom(tmp_path / "m2.dcm", pixels))
    mono1 = decode_gray(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    assert mono2.dtype == np.uint8 and mono2.shape == (40, 40) and mono2.std() > 10
    np.testing.assert_array_equal(mono1.astype(int), 255 - mono2.astype(int))


def test_16bit_png_full_range_decodes_to_8bit(tmp_path):
    pixels = radiograph(3, size=40, bits=16)
    out = decode_gray(write_png(tmp_path / "deep.png", pixels))
    lo, hi = float(pixels.min()), float(pixels.max())
    np.testing.assert_allclose(out.astype(float), (pixels - lo) / (hi - lo) * 255, atol=1)
