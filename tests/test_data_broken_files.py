"""Bad images never stop a run: usable oddities are decoded right, the rest skipped and listed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import TrainConfig
from core.data import load_dataset
from core.data.base import DataError

SIZE = 16


def make_files(root: Path) -> dict[str, np.ndarray]:
    """Every kind of file; returns the expected pixels (after resize) of the usable ones."""
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    good = np.full((20, 20), 90, dtype=np.uint8)
    Image.fromarray(good).save(root / "good.png")
    expected["good.png"] = np.full((SIZE, SIZE), 90, dtype=np.uint8)
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., :3] = 140  # alpha 0: must be dropped, not composited to black
    Image.fromarray(rgba, mode="RGBA").save(root / "rgba.png")
    expected["rgba.png"] = np.full((SIZE, SIZE), 140, dtype=np.uint8)
    deep = np.zeros((20, 20), dtype=np.uint16)
    deep[:, 10:] = 4000  # 12-bit data in a 16-bit PNG: stretched to 0..255
    Image.fromarray(deep).save(root / "deep16.png")
    expected["deep16.png"] = None  # checked separately (edge pixels are blended by the resize)
    Image.fromarray(np.full((20, 20), 33, dtype=np.uint8)).save(root / "jpeg_named.png", format="JPEG", quality=100)
    expected["jpeg_named.png"] = np.full((SIZE, SIZE), 33, dtype=np.uint8)
    (root / "zero.png").write_bytes(b"")
    (root / "notes.png").write_text("not an image at all\n")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8)).save(root / "trunc.png")
    (root / "trunc.png").write_bytes((root / "trunc.png").read_bytes()[:3000])
    return expected


BROKEN = {"missing.png": "missing file", "zero.png": "empty file (0 bytes)",
          "notes.png": "not an image (unrecognised format)", "trunc.png": "truncated or corrupt image"}


def test_dataset_builder_skips_and_reports_each_broken_file(tmp_path):
    expected = make_files(tmp_path / "data")
    names = [n for pair in zip(BROKEN, expected) for n in pair]  # broken rows between good ones
    rows = [f"{n},{'ab'[k % 2]}" for k, n in enumerate(names)]
    (tmp_path / "data" / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    config = TrainConfig(dataset="csv", data_dir=str(tmp_path / "data"), csv="labels.csv", img_size=SIZE,
                         cache_dir=str(tmp_path / "cache"), val_fraction=0.0)
    b = load_dataset(config)

    reasons = {Path(f).name: r for f, r in b.skipped}
    assert set(reasons) == set(BROKEN)
    for name, reason in BROKEN.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert sorted(b.train.ids) == sorted(expected)

    images = {image_id: b.train.image(i) for i, image_id in enumerate(b.train.ids)}
    for name, pixels in expected.items():
        if pixels is not None:
            np.testing.assert_allclose(images[name].astype(int), pixels.astype(int), atol=1, err_msg=name)
    deep = images["deep16.png"]
    assert deep[:, 0].max() == 0 and deep[:, -1].min() == 255

    again = load_dataset(config)  # from the cache: the same report, no decoding
    assert sorted(again.skipped) == sorted(b.skipped)
    assert any("valid, reused" in n for n in again.notes)


def test_label_file_with_only_broken_images_is_an_error_naming_it(tmp_path):
    make_files(tmp_path)
    (tmp_path / "bad.csv").write_text("path,label\nzero.png,a\nnotes.png,b\nmissing.png,a\n")
    with pytest.raises(DataError) as info:
        load_dataset(TrainConfig(dataset="csv", data_dir=str(tmp_path), csv="bad.csv", img_size=SIZE,
                                 cache_dir=str(tmp_path / "cache")))
    message = str(info.value)
    assert "bad.csv: resolves to zero usable images (3 rows, 1 missing files, 2 other problems" in message
    assert "zero.png: empty file" in message
