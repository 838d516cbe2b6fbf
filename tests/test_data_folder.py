"""`--dataset folder`: class sub-folders, cached pixels, broken files skipped, and a real run."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data import DataError, load_dataset
from core.training.trainer import Trainer
from core.config.resolve import resolve_config


def make_folder(root, n_per_class=12, broken=True):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["normal", "pneumonia"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            arr = (rng.random((40, 40)) * 60 + c * 150).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    if broken:
        (root / "normal" / "empty.png").write_bytes(b"")
        (root / "pneumonia" / "text.jpg").write_text("not an image")
    return root


def test_folder_dataset_classes_split_and_skips(tmp_path):
    root = make_folder(tmp_path / "data")
    cfg = resolve_config({"dataset": "folder", "data_dir": str(root), "img_size": 32, "val_fraction": 0.25,
                          "cache_dir": str(tmp_path / "cache")}, vram_gib=None).config
    bundle = load_dataset(cfg)
    assert bundle.classes == ["normal", "pneumonia"]
    assert len(bundle.train) + len(bundle.val) == 24
    assert {s[0].split("/")[-1] for s in bundle.skipped} == {"empty.png", "text.jpg"}
    assert bundle.train.image(0).shape == (32, 32)


def test_folder_run_writes_skipped_list(tmp_path):
    root = make_folder(tmp_path / "data")
    flags = {"dataset": "folder", "data_dir": str(root), "img_size": 32, "epochs": 1, "batch_size": 8,
             "model": "resnet18", "output_dir": str(tmp_path / "runs"), "num_workers": 0,
             "cache_dir": str(tmp_path / "cache"), "pretrained": False}
    trainer = Trainer(resolve_config(flags, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished" and summary["skipped_images"] == 2
    listed = (trainer.run_dir / "skipped_images.txt").read_text()
    assert "empty.png" in listed and "text.jpg" in listed


def test_folder_needs_two_classes(tmp_path):
    (tmp_path / "only").mkdir()
    cfg = resolve_config({"dataset": "folder", "data_dir": str(tmp_path)}, vram_gib=None).config
    with pytest.raises(DataError, match="at least 2 class sub-folders"):
        load_dataset(cfg)
