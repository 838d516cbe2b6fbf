"""Leave-one-domain-out (`holdout_domain`): one domain's images are the validation split, the
others' the training split, for measuring generalization to a scanner or site never seen."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import TrainConfig
from core.data import DataError, load_dataset
from core.data.base import ArrayTable, ConcatTable, in_memory


def synthetic(**overrides):
    return load_dataset(TrainConfig(dataset="synthetic", img_size=32, synthetic_size=120, **overrides))


@pytest.mark.parametrize("domain", ["scanner_C", "SCANNER_c", "2"])
def test_held_out_domain_is_the_whole_validation_split(domain):
    full = synthetic()
    held = synthetic(holdout_domain=domain)
    assert set(held.val.domains.tolist()) == {2} and 2 not in set(held.train.domains.tolist())
    pooled_ids = set(full.train.ids) | set(full.val.ids)
    assert set(held.train.ids) | set(held.val.ids) == pooled_ids  # nothing lost, nothing added
    assert not set(held.train.ids) & set(held.val.ids)
    assert len(held.val) == int(np.sum(np.concatenate([full.train.domains, full.val.domains]) == 2))
    assert held.test.ids == full.test.ids  # the test split is left alone
    assert any("leave-one-domain-out: domain 'scanner_C'" in n for n in held.notes)
    # every image and target follows its id through the regrouping
    by_id = {i: (full.train, k) for k, i in enumerate(full.train.ids)}
    by_id.update({i: (full.val, k) for k, i in enumerate(full.val.ids)})
    for table in (held.train, held.val):
        for k in (0, len(table) // 2, len(table) - 1):
            source, j = by_id[table.ids[k]]
            assert np.array_equal(table.image(k), source.image(j))
            assert table.targets[k] == source.targets[j]


def test_unknown_domain_names_the_allowed_ones():
    with pytest.raises(DataError, match=r"holdout_domain: 'scanner_Z' is not a domain of dataset 'synthetic'. "
                                        r"Allowed: 0 \(scanner_A\), 1 \(scanner_B\), 2 \(scanner_C\), 3 \(scanner_D\)"):
        synthetic(holdout_domain="scanner_Z")


def test_single_domain_dataset_cannot_hold_out_its_only_domain(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    config = TrainConfig(dataset="folder", data_dir=str(tmp_path), img_size=16, val_fraction=0.3, holdout_domain="0")
    with pytest.raises(DataError, match="leaves nothing to train on"):
        load_dataset(config)


def test_concatenated_in_memory_tables_stay_in_memory():
    a = ArrayTable(np.zeros((2, 4, 4), np.uint8), np.array([0, 1]), np.array([0, 0]))
    b = ArrayTable(np.ones((3, 4, 4), np.uint8), np.array([1, 1, 0]), np.array([1, 1, 1]))
    both = ConcatTable([a, b.subset([0, 2])])
    assert len(both) == 4 and both.image(1).max() == 0 and both.image(2).max() == 1
    assert both.targets.tolist() == [0, 1, 1, 0] and both.domains.tolist() == [0, 0, 1, 1]
    assert in_memory(both) and in_memory(both.subset([3]))


def test_training_with_a_held_out_domain_validates_on_it(tiny_flags):
    from core.training.trainer import Trainer
    from core.events import RunStarted
    from core.config.resolve import resolve_config

    events = []
    flags = {**tiny_flags, "model": "test_resnet", "epochs": 1, "holdout_domain": "scanner_B"}
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append)
    summary = trainer.fit()
    assert summary["status"] == "finished", summary.get("error")
    assert trainer.num_workers == 0
    started = next(e for e in events if isinstance(e, RunStarted))
    assert any("domain 'scanner_B'" in n for n in started.notes) and started.n_val == len(trainer.bundle.val)
    assert set(trainer.bundle.val.domains.tolist()) == {1}
