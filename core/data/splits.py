"""Seeded validation splits that keep every patient's images on one side.

Images of one patient are near-duplicates; letting them straddle train and validation inflates
validation scores. Patients are shuffled in sorted order, so the split depends only on the set
of patients and the seed, not on file order.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def n_holdout(n_groups: int, fraction: float) -> int:
    """Groups to hold out: round(fraction * n), at least 1 and never all of them."""
    if fraction <= 0 or n_groups < 2:
        return 0
    return int(min(n_groups - 1, max(1, np.floor(fraction * n_groups + 0.5))))


def split_by_patient(patients: Sequence[Optional[str]], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep_indices, holdout_indices); images without a patient id count as their own patient."""
    groups = [p if p not in (None, "") else f"\x00image{i}" for i, p in enumerate(patients)]
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    held = {unique[j] for j in order[:n_holdout(len(unique), fraction)]}
    mask = np.fromiter((g in held for g in groups), dtype=bool, count=len(groups))
    return np.flatnonzero(~mask), np.flatnonzero(mask)
