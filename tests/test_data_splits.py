"""Seeded patient-level validation splits (optionally stratified by class)."""
from __future__ import annotations

import numpy as np

from core.data.splits import n_holdout, split_by_patient


def test_holdout_count_rounds_and_never_takes_everything():
    assert [n_holdout(n, 0.1) for n in (0, 1, 2, 10, 14, 15, 16)] == [0, 0, 1, 1, 1, 2, 2]
    assert n_holdout(5, 0.0) == 0 and n_holdout(3, 1.0) == 2


def test_patients_never_straddle_and_seed_decides():
    patients = [f"p{i // 3}" for i in range(60)]  # 20 patients, 3 images each
    keep, held = split_by_patient(patients, 0.25, seed=1)
    assert len(held) == 5 * 3 and len(keep) + len(held) == 60
    assert not {patients[i] for i in keep} & {patients[i] for i in held}
    again, _ = split_by_patient(list(reversed(patients)), 0.25, seed=1)
    assert {patients[::-1][i] for i in again} == {patients[i] for i in keep}  # order does not matter
    other, _ = split_by_patient(patients, 0.25, seed=2)
    assert set(other) != set(keep)


def test_images_without_patient_are_their_own_group():
    keep, held = split_by_patient([None] * 10, 0.3, seed=0)
    assert len(held) == 3 and len(keep) == 7


def test_stratified_split_keeps_a_rare_class_in_validation():
    labels = [0] * 40 + [1] * 2
    patients = [f"p{i}" for i in range(42)]
    for seed in range(10):
        keep, held = split_by_patient(patients, 0.1, seed, strata=labels)
        assert sorted(np.asarray(labels)[held].tolist()) == [0, 0, 0, 0, 1]
        plain_keep, plain_held = split_by_patient(patients, 0.1, seed)
        assert len(plain_held) == 4
