"""VinBigData train.csv: radiologist consensus, PNG and DICOM images, clear errors."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import TrainConfig
from core.data import load_dataset
from core.data.base import DataError
from core.data.decode import decode_gray, resize_square
from core.data.vinbigdata import FINDINGS, consensus, read_annotations

from conftest import FIXTURES
from official_layouts import write_dicom
SAMPLE = FIXTURES / "label_formats" / "vinbigdata_train_sample.csv"
DICOM = FIXTURES / "dicom" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max"


def config(root: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset="vinbigdata", data_dir=str(root), img_size=32, cache_dir=str(root / "cache"), **kw)


def make_dataset(root: Path, csv_text: str, ids: list[str], suffix: str = ".png") -> None:
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text(csv_text)
    for k, image_id in enumerate(ids):
        Image.fromarray(np.full((40, 40), 10 + k, dtype=np.uint8)).save(root / "train" / f"{image_id}{suffix}", format="PNG")


@pytest.mark.real_data
def test_sample_csv_consensus_counts():
    images = read_annotations(SAMPLE)
    assert len(images) == 37
    assert {len(e["rads"]) for e in images.values()} == {3}
    assert sum(consensus(e, "any") for e in images.values()) == 22
    # In this excerpt every abnormal image was marked by all three readers, so majority agrees.
    assert sum(consensus(e, "majority") for e in images.values()) == 22


@pytest.mark.real_data
def test_bundle_from_sample_csv_with_png_images(tmp_path):
    ids = list(read_annotations(SAMPLE))
    make_dataset(tmp_path, SAMPLE.read_text(), ids)
    b = load_dataset(config(tmp_path, val_fraction=0.2))
    assert b.classes == ["Normal", "Abnormal"] and not b.multi_label and b.test is None
    assert (b.class_counts("train") + b.class_counts("val")).tolist() == [15, 22]
    assert len(b.val) == round(0.2 * 37) and not set(b.train.ids) & set(b.val.ids)
    assert b.skipped == []


def test_any_versus_majority(tmp_path):
    rows = [HEADER,
            "one_of_three,Nodule/Mass,8,R1,1,1,5,5", "one_of_three,No finding,14,R2,,,,", "one_of_three,No finding,14,R3,,,,",
            "two_of_three,Cardiomegaly,3,R1,1,1,5,5", "two_of_three,Cardiomegaly,3,R2,1,1,5,5",
            "two_of_three,Nodule/Mass,8,R2,2,2,4,4", "two_of_three,No finding,14,R3,,,,",
            "normal,No finding,14,R1,,,,", "normal,No finding,14,R2,,,,", "normal,No finding,14,R3,,,,"]
    make_dataset(tmp_path, "\n".join(rows) + "\n", ["one_of_three", "two_of_three", "normal"])

    def targets(**kw):
        b = load_dataset(config(tmp_path, val_fraction=0.0, **kw))
        return dict(zip(b.train.ids, b.train.targets.tolist()))

    assert targets(vin_consensus="any") == {"one_of_three": 1, "two_of_three": 1, "normal": 0}
    assert targets(vin_consensus="majority") == {"one_of_three": 0, "two_of_three": 1, "normal": 0}
    multi = targets(vin_consensus="majority", multi_label=True)
    assert [FINDINGS[k] for k in np.flatnonzero(multi["two_of_three"])] == ["Cardiomegaly"]
    assert sum(multi["one_of_three"]) == 0
    multi_any = targets(vin_consensus="any", multi_label=True)
    assert [FINDINGS[k] for k in np.flatnonzero(multi_any["two_of_three"])] == ["Cardiomegaly", "Nodule/Mass"]


@pytest.mark.real_data
def test_dicom_images_are_decoded(tmp_path):
    pytest.importorskip("pydicom")
    rows = [HEADER, "a,No finding,14,R1,,,,", "b,Cardiomegaly,3,R1,1,1,5,5", "c,No finding,14,R1,,,,"]
    make_dataset(tmp_path, "\n".join(rows) + "\n", [])
    for image_id in ("a", "b", "c"):
        shutil.copy(DICOM, tmp_path / "train" / f"{image_id}.dicom")
    b = load_dataset(config(tmp_path, val_fraction=0.0))
    assert len(b.train) == 3 and b.skipped == []
    np.testing.assert_array_equal(b.train.image(0), resize_square(decode_gray(DICOM), 32))
    assert b.train.image(0).std() > 20


def test_png_is_preferred_over_dicom_and_missing_ids_are_skipped(tmp_path):
    rows = [HEADER, "a,No finding,14,R1,,,,", "b,Cardiomegaly,3,R1,1,1,5,5", "gone,No finding,14,R1,,,,"]
    make_dataset(tmp_path, "\n".join(rows) + "\n", ["a", "b"])
    (tmp_path / "train" / "a.dicom").write_bytes(b"not read because a.png exists")
    b = load_dataset(config(tmp_path, val_fraction=0.0))
    assert sorted(b.train.ids) == ["a", "b"]
    assert b.skipped == [("gone", "missing file")]


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    rows = [HEADER, "a,No finding,14,R1,,,,", "b,Cardiomegaly,3,R1,1,1,5,5"]
    make_dataset(tmp_path, "\n".join(rows) + "\n", [])
    for image_id in ("a", "b"):
        write_dicom(tmp_path / "train" / f"{image_id}.dicom", np.full((8, 8), 100, dtype=np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(DataError, match=r"needs pydicom.*uv sync --extra dicom.*medcls\[dicom\]"):
        load_dataset(config(tmp_path))
    assert not (tmp_path / "cache").exists()  # failed before any decoding


def test_unknown_class_id_names_file_and_line(tmp_path):
    rows = [HEADER, "a,No finding,14,R1,,,,", "b,Something,15,R1,1,1,5,5"]
    make_dataset(tmp_path, "\n".join(rows) + "\n", ["a", "b"])
    with pytest.raises(DataError, match=r"train.csv line 3: class_id '15' is not a VinBigData class"):
        load_dataset(config(tmp_path))


@pytest.mark.real_data
def test_sample_csv_alone_has_no_images(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"train.csv: resolves to zero usable images \(37 rows, 37 missing"):
        load_dataset(config(tmp_path))
