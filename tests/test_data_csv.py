"""`--dataset csv`: the user's own table (single/multi-label, domain, patient, split columns)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import TrainConfig
from core.data import load_dataset
from core.data.base import DataError


def write_images(root: Path, names: list[str]) -> None:
    for k, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 30), 5 * k, dtype=np.uint8)).save(root / name)


def build(root: Path, table: str, name: str = "labels.csv", **kw):
    (root / name).write_text(table)
    values = dict(dataset="csv", data_dir=str(root), csv=name, img_size=16, cache_dir=str(root / "cache"), seed=3)
    values.update(kw)
    return load_dataset(TrainConfig(**values))


def test_single_label_with_domain_patient_and_split_columns(tmp_path):
    names = [f"img/{i}.png" for i in range(8)]
    write_images(tmp_path, names)
    table = ("Path,Label,Domain,Patient,Split\n"
             "img/0.png,normal,siteA,p0,train\nimg/1.png,pneumonia,siteB,p1,train\n"
             "img/2.png,normal,siteB,p2,train\nimg/3.png,pneumonia,siteA,p3,train\n"
             "img/4.png,normal,siteA,p4,val\nimg/5.png,pneumonia,siteB,p5,valid\n"
             "img/6.png,normal,siteA,p6,test\nimg/7.png,pneumonia,siteB,p7,testing\n")
    b = build(tmp_path, table)
    assert b.classes == ["normal", "pneumonia"] and not b.multi_label
    assert (b.train.ids, b.val.ids, b.test.ids) == (names[:4], names[4:6], names[6:])
    assert b.train.targets.tolist() == [0, 1, 0, 1]
    assert b.domain_names == ["siteA", "siteB"] and b.test.domains.tolist() == [0, 1]
    assert b.val.patients == ["p4", "p5"]
    np.testing.assert_array_equal(b.test.image(1), np.full((16, 16), 35, dtype=np.uint8))


def test_multi_label_pipes_and_empty_cells(tmp_path):
    write_images(tmp_path, ["a.png", "b.png", "c.png", "d.png"])
    b = build(tmp_path, "image,labels\na.png,Effusion|Nodule\nb.png,\nc.png,Nodule\nd.png,Effusion\n", val_fraction=0.0)
    assert b.multi_label and b.classes == ["Effusion", "Nodule"]
    targets = dict(zip(b.train.ids, b.train.targets.tolist()))
    assert targets == {"a.png": [1.0, 1.0], "b.png": [0.0, 0.0], "c.png": [0.0, 1.0], "d.png": [1.0, 0.0]}


def test_without_split_column_validation_is_split_by_patient(tmp_path):
    names = [f"{i}.png" for i in range(20)]
    write_images(tmp_path, names)
    rows = [f"{n},{'ab'[i % 2]},pat{i // 2}" for i, n in enumerate(names)]  # two images per patient
    b = build(tmp_path, "path,label,patient_id\n" + "\n".join(rows) + "\n", val_fraction=0.2)
    assert b.test is None and len(b.train) + len(b.val) == 20
    assert len(set(b.val.patients)) == 2 and not set(b.train.patients) & set(b.val.patients)


def test_split_column_without_val_rows_still_gets_validation(tmp_path):
    names = [f"{i}.png" for i in range(10)]
    write_images(tmp_path, names)
    rows = [f"{n},{'ab'[i % 2]},{'test' if i >= 8 else 'train'}" for i, n in enumerate(names)]
    b = build(tmp_path, "path,label,split\n" + "\n".join(rows) + "\n", val_fraction=0.25)
    assert len(b.test) == 2 and len(b.val) == 2 and len(b.train) == 6


def test_tab_separated_and_absolute_paths(tmp_path):
    write_images(tmp_path / "elsewhere", ["x.png", "y.png"])
    table = f"path\tlabel\n{tmp_path / 'elsewhere' / 'x.png'}\tcat\n{tmp_path / 'elsewhere' / 'y.png'}\tdog\n"
    (tmp_path / "root").mkdir()
    b = build(tmp_path / "root", table, name="t.tsv", val_fraction=0.0)
    assert b.classes == ["cat", "dog"] and len(b.train) == 2


@pytest.mark.parametrize("table, message", [
    ("file_name,label\na.png,x\n", r"labels.csv line 1: no 'path' column"),
    ("path,diagnosis\na.png,x\n", r"labels.csv line 1: no 'label' column"),
    ("path,label,split\na.png,x,train\nb.png,y,holdout\n", r"labels.csv line 3: split 'holdout' not allowed"),
    ("path,label,split\na.png,x,train\nb.png,y,train\nc.png,z,test\n",
     r"labels.csv line 4: label 'z' does not occur in the training rows. Allowed: x, y"),
    ("path,label\na.png,x\nb.png,\n", r"labels.csv line 3: empty label"),
    ("path,label\na.png,x\nb.png,x\n", r"at least 2 classes"),
])
def test_label_errors_name_file_and_line(tmp_path, table, message):
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    with pytest.raises(DataError, match=message):
        build(tmp_path, table)


def test_pipes_with_no_multi_label_is_an_error(tmp_path):
    write_images(tmp_path, ["a.png"])
    with pytest.raises(DataError, match=r"line 2: '\|' joins several labels but --no-multi_label"):
        build(tmp_path, "path,label\na.png,x|y\n", multi_label=False)


def test_missing_csv_argument_or_file(tmp_path):
    with pytest.raises(DataError, match="needs --csv FILE"):
        load_dataset(TrainConfig(dataset="csv", data_dir=str(tmp_path), img_size=16))
    with pytest.raises(DataError, match="csv: file not found"):
        load_dataset(TrainConfig(dataset="csv", data_dir=str(tmp_path), csv="nope.csv", img_size=16))
