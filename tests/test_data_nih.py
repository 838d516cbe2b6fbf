"""NIH ChestX-ray14 in its official layout, checked against the numbers in fixtures/README.md."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainConfig
from core.data import load_dataset
from core.data.base import DataError
from core.data.nih import FINDINGS, read_entries

from conftest import FIXTURES
NIH = FIXTURES / "nih_chestxray14"

# fixtures/README.md: images with each finding, (train_val, test).
TABLE = {
    "Atelectasis": (42, 3), "Cardiomegaly": (25, 3), "Effusion": (38, 5), "Infiltration": (57, 7),
    "Mass": (27, 8), "Nodule": (41, 4), "Pneumonia": (14, 2), "Pneumothorax": (19, 3),
    "Consolidation": (37, 5), "Edema": (7, 2), "Emphysema": (17, 3), "Fibrosis": (22, 6),
    "Pleural_Thickening": (31, 5), "Hernia": (8, 1),
}
NO_FINDING = (47, 6)


def config(data_dir: Path, cache_dir: Path, **kw) -> TrainConfig:
    values = dict(dataset="nih", data_dir=str(data_dir), img_size=32, cache_dir=str(cache_dir), seed=0)
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_dataset(config(NIH, tmp_path_factory.mktemp("cache"), multi_label=True))


def patients(table) -> set[str]:
    return set(table.patients)


@pytest.mark.real_data
def test_counts_and_official_split(bundle):
    assert bundle.multi_label and bundle.classes == FINDINGS and bundle.skipped == []
    assert len(bundle.train) + len(bundle.val) == 278
    assert len(bundle.test) == 41
    assert len(patients(bundle.test)) == 37
    assert len(patients(bundle.train) | patients(bundle.val) | patients(bundle.test)) == 313
    official_test = set((NIH / "test_list.txt").read_text().split())
    assert set(bundle.test.ids) == official_test
    assert not (set(bundle.train.ids) | set(bundle.val.ids)) & official_test


@pytest.mark.real_data
def test_splits_are_patient_disjoint(bundle):
    train, val, test = patients(bundle.train), patients(bundle.val), patients(bundle.test)
    assert not train & val and not train & test and not val & test
    assert len(val) == round(0.1 * len(train | val))  # default val_fraction of train_val patients


@pytest.mark.real_data
def test_positives_per_finding_match_the_readme(bundle):
    trainval = bundle.class_counts("train") + bundle.class_counts("val")
    test = bundle.class_counts("test")
    for k, finding in enumerate(FINDINGS):
        assert (trainval[k], test[k]) == TABLE[finding], finding
    all_zero = lambda t: int((t.targets.sum(axis=1) == 0).sum())  # noqa: E731
    assert (all_zero(bundle.train) + all_zero(bundle.val), all_zero(bundle.test)) == NO_FINDING


@pytest.mark.real_data
def test_multi_hot_targets_and_domains(bundle):
    assert bundle.train.targets.dtype == np.float32 and bundle.train.targets.shape[1] == 14
    everything = {}
    for table in (bundle.train, bundle.val, bundle.test):
        for i, image_id in enumerate(table.ids):
            everything[image_id] = (table.targets[i], bundle.domain_names[table.domains[i]])
    target, view = everything["00000001_002.png"]  # "Cardiomegaly|Effusion", PA
    assert [FINDINGS[k] for k in np.flatnonzero(target)] == ["Cardiomegaly", "Effusion"] and view == "PA"
    assert bundle.domain_names == ["AP", "PA"]
    views = [v for _, v in everything.values()]
    assert (views.count("PA"), views.count("AP")) == (266, 53)
    assert sum(int(t.sum() > 1) for t, _ in everything.values()) == 111


@pytest.mark.real_data
def test_images_are_cached_at_training_resolution(bundle):
    img = bundle.train.image(0)
    assert img.shape == (32, 32) and img.dtype == np.uint8 and img.std() > 5


@pytest.mark.real_data
def test_header_with_unquoted_brackets_parses_by_name():
    header = (NIH / "Data_Entry_2017_v2020.csv").read_text().splitlines()[0]
    assert len(header.split(",")) == 11  # the bracketed cells split, like the data rows
    rows = read_entries(FIXTURES / "label_formats" / "nih_Data_Entry_2017_v2020_head.csv")
    assert len(rows) == 150
    assert rows[0]["image"] == "00000001_000.png" and rows[0]["patient"] == "1" and rows[0]["view"] == "PA"


@pytest.mark.real_data
def test_validation_fraction_and_seed(tmp_path):
    a = load_dataset(config(NIH, tmp_path, val_fraction=0.3, seed=1))
    b = load_dataset(config(NIH, tmp_path, val_fraction=0.3, seed=1))
    c = load_dataset(config(NIH, tmp_path, val_fraction=0.3, seed=2))
    trainval_patients = len(patients(a.train) | patients(a.val))
    assert len(patients(a.val)) == round(0.3 * trainval_patients)
    assert a.val.ids == b.val.ids and a.val.ids != c.val.ids
    assert len(a.test) == 41  # the official test split never moves


@pytest.mark.real_data
def test_nested_official_archive_layout_and_missing_images(tmp_path):
    root = tmp_path / "nih"
    names = sorted(p.name for p in (NIH / "images").iterdir())
    for k, name in enumerate(names[:-2]):  # the last two are "not downloaded"
        folder = root / f"images_{1 + k % 3:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(NIH / "images" / name, folder / name)
    for f in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"):
        shutil.copy(NIH / f, root / f)
    b = load_dataset(config(root, tmp_path / "cache"))
    assert len(b.train) + len(b.val) + len(b.test) == 317
    assert sorted(Path(f).name for f, _ in b.skipped) == names[-2:]
    assert {r for _, r in b.skipped} == {"missing file"}


@pytest.mark.real_data
def test_single_label_is_no_finding_vs_abnormal(tmp_path):
    b = load_dataset(config(NIH, tmp_path, multi_label=False))
    assert b.classes == ["Normal", "Abnormal"] and not b.multi_label
    normal = sum(int((t.targets == 0).sum()) for t in (b.train, b.val, b.test))
    assert normal == 53


@pytest.mark.real_data
def test_unknown_finding_names_file_and_line(tmp_path):
    lines = (NIH / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[1], "Cardiomegaly|Tumour", 1)
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"Data_Entry_2017_v2020.csv line 6: unknown finding 'Tumour'"):
        load_dataset(config(tmp_path, tmp_path / "cache"))


@pytest.mark.real_data
def test_without_split_lists_falls_back_to_a_patient_split(tmp_path):
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    shutil.copy(NIH / "Data_Entry_2017_v2020.csv", root)
    for name in sorted(p.name for p in (NIH / "images").iterdir())[:60]:
        shutil.copy(NIH / "images" / name, root / "images" / name)
    b = load_dataset(config(root, tmp_path / "cache"))
    assert any("train_val_list.txt / test_list.txt not found" in n for n in b.notes)
    assert len(b.train) + len(b.val) + len(b.test) == 60
    assert not patients(b.test) & (patients(b.train) | patients(b.val))


@pytest.mark.real_data
def _tree_state(root: Path) -> dict:
    """Every path under root with its bytes' size, mtime and content: what 'never written' compares."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))} | {".": (True, root.stat().st_mtime_ns, None)}


def _set_read_only(root: Path, read_only: bool) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555 if read_only else 0o755)
        else:
            p.chmod(0o444 if read_only else 0o644)


@pytest.mark.real_data
def test_read_only_fixture_is_never_written(tmp_path, monkeypatch):
    """A dataset folder marked read-only (a shared mount) gets no cache written into it, even as root
    (where permissions stop nothing): the test makes its own read-only copy, so it checks that wherever
    the fixtures are (a writable `cp -r`, MEDCLS_FIXTURES at a fresh copy), and compares the tree
    before and after instead of relying on a permission error."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = tmp_path / "nih"
    shutil.copytree(NIH, data)
    _set_read_only(data, True)
    try:
        before = _tree_state(data)
        b = load_dataset(TrainConfig(dataset="nih", data_dir=str(data), img_size=16))
        after = _tree_state(data)
    finally:
        _set_read_only(data, False)
    assert after == before
    assert not (data / ".medcls_cache").exists()
    assert any("not writable" in n for n in b.notes)
    assert list((tmp_path / "xdg" / "medcls").rglob("manifest.json"))


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="needs --data_dir"):
        load_dataset(TrainConfig(dataset="nih", img_size=32))
    with pytest.raises(DataError, match="no NIH label file"):
        load_dataset(config(tmp_path, tmp_path / "cache"))
