"""Linear-probe feature cache: same outputs as the backbone, reused by a later run with the same key,
not reused when the model, weights, pixels or size differ."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.base import ArrayTable
from core.training.trainer import Trainer
from core.training.validation import Validator
from core.models.feature_cache import FeatureCache, FeatureKey, pixels_digest, weights_digest
from core.config.resolve import resolve_config
from core.runs.folder import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def probe_flags(tiny_flags, **extra):
    return {**tiny_flags, "mode": "linear_probe", "augmentation": "none", "epochs": 2, **extra}


def fit(flags):
    trainer = Trainer(resolve_config(flags, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished", summary.get("error")
    records = [r for r in read_metrics(trainer.run_dir) if r["event"] == "FeatureCache"]
    return trainer, summary, records


def test_cached_features_equal_the_backbone_outputs(tiny_flags):
    trainer, _, records = fit(probe_flags(tiny_flags, run_name="first"))
    assert [(r["split"], r["hit"]) for r in records] == [("train", False), ("val", False)]
    stored = torch.from_numpy(np.load(records[0]["path"]))
    ds = trainer.train_ds
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.pool(trainer.model.features(trainer.normalize(images)))
    assert stored.shape == expected.shape == (len(ds), trainer.model.num_features)
    torch.testing.assert_close(stored, expected, rtol=1e-4, atol=1e-5)


def test_a_later_run_with_the_same_key_reads_the_cache(tiny_flags, monkeypatch):
    _, first, _ = fit(probe_flags(tiny_flags, run_name="first"))

    def backbone_must_not_run(*args, **kwargs):
        raise AssertionError("features were recomputed although the cache had them")

    monkeypatch.setattr(Validator, "extract_features", backbone_must_not_run)
    _, second, records = fit(probe_flags(tiny_flags, run_name="second"))
    assert [(r["split"], r["hit"]) for r in records] == [("train", True), ("val", True)]
    assert second["val_auroc"] == pytest.approx(first["val_auroc"], abs=1e-6)
    assert second["val_loss"] == pytest.approx(first["val_loss"], rel=1e-5)


def test_other_weights_or_pixels_miss_the_cache(tiny_flags, tmp_path):
    """Same data, other backbone weights (a local pretrained file): a miss; the same file again: a hit.
    Another seed renders other phantoms: a miss."""
    import timm

    torch.manual_seed(123)
    weights = tmp_path / "resnet18_other.pt"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), weights)
    fit(probe_flags(tiny_flags, run_name="random_init", epochs=1))
    _, _, records = fit(probe_flags(tiny_flags, run_name="pretrained", epochs=1, pretrained_path=str(weights)))
    assert [r["hit"] for r in records] == [False, False]
    _, _, records = fit(probe_flags(tiny_flags, run_name="pretrained_again", epochs=1, pretrained_path=str(weights)))
    assert [r["hit"] for r in records] == [True, True]
    _, _, records = fit(probe_flags(tiny_flags, run_name="other_seed", epochs=1, seed=7))
    assert [r["hit"] for r in records] == [False, False]


def test_feature_cache_off_runs_the_backbone_every_epoch(tiny_flags, monkeypatch):
    from core.models.build import Classifier

    calls = []
    original = Classifier.features
    monkeypatch.setattr(Classifier, "features", lambda self, x: calls.append(len(x)) or original(self, x))
    trainer, _, records = fit(probe_flags(tiny_flags, feature_cache=False))
    assert records == []
    assert not (trainer.run_dir.parent / ".medcls_cache").exists()
    n_train_seen = 2 * trainer.steps_per_epoch * trainer.batch_size
    assert sum(calls) >= n_train_seen + 2 * len(trainer.val_ds)


def test_pixels_and_weights_digests_see_one_changed_value():
    images = np.zeros((5, 8, 8), dtype=np.uint8)
    table = ArrayTable(images, np.zeros(5, dtype=np.int64), np.zeros(5))
    before = pixels_digest(table)
    assert pixels_digest(table.subset([0, 1, 2])) != before
    assert pixels_digest(table.subset([2, 1, 0, 3, 4])) == before  # all-zero rows: order-blind by content
    images[3, 4, 4] = 1
    assert pixels_digest(table) != before
    assert pixels_digest(table.subset([2, 1, 0, 3, 4])) != pixels_digest(table.subset([3, 1, 0, 2, 4]))

    bn = torch.nn.BatchNorm1d(4)
    w = weights_digest(bn)
    bn.running_mean[2] = 0.5
    assert weights_digest(bn) != w


def test_wrong_shape_on_disk_is_not_used(tmp_path):
    cache = FeatureCache(tmp_path)
    key = FeatureKey(model="m", weights="w", img_size=32, amp_dtype="None", pixels="p")
    cache.save(key, torch.ones(4, 3))
    assert cache.load(key, 4).shape == (4, 3)
    assert cache.load(key, 5) is None
    other = FeatureKey(model="m", weights="w", img_size=48, amp_dtype="None", pixels="p")
    assert cache.load(other, 4) is None
    assert not list(tmp_path.glob("*.tmp*"))
