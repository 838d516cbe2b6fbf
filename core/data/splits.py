"""Seeded validation splits that keep every patient's images on one side.

Images of one patient are near-duplicates; letting them straddle train and validation inflates
validation scores. Patients are shuffled in sorted order, so the split depends only on the set
of patients and the seed, not on file order. For single-label data the split is stratified:
each class (a patient's most frequent label) gives its own share of patients, so a rare class
with at least two patients is never missing from validation (its AUROC would be undefined).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np


def n_holdout(n_groups: int, fraction: float) -> int:
    """Groups to hold out: round(fraction * n), at least 1 and never all of them."""
    if fraction <= 0 or n_groups < 2:
        return 0
    return int(min(n_groups - 1, max(1, np.floor(fraction * n_groups + 0.5))))


def split_by_patient(patients: Sequence[Optional[str]], fraction: float, seed: int,
                     strata: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(keep_indices, holdout_indices); images without a patient id count as their own patient.

    strata: a class per image (single-label) to stratify by; None = plain patient split.
    """
    groups = [p if p not in (None, "") else f"\x00image{i}" for i, p in enumerate(patients)]
    unique = sorted(set(groups))
    if strata is None:
        by_stratum = {0: unique}
    else:
        votes: dict[str, Counter] = {}
        for g, s in zip(groups, strata):
            votes.setdefault(g, Counter())[int(s)] += 1
        by_stratum = {}
        for g in unique:
            label = min(votes[g].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            by_stratum.setdefault(label, []).append(g)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for label in sorted(by_stratum):
        members = by_stratum[label]
        order = rng.permutation(len(members))
        held.update(members[j] for j in order[:n_holdout(len(members), fraction)])
    mask = np.fromiter((g in held for g in groups), dtype=bool, count=len(groups))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def hold_out_domain(bundle, domain: str):
    """Leave-one-domain-out: the named domain's train and val images become the validation split,
    every other domain's the training split. `domain` is a name (case-insensitive) or an index."""
    from core.data.base import ConcatTable, DataError

    names = list(bundle.domain_names)
    wanted = str(domain).strip()
    lowered = [n.lower() for n in names]
    if wanted.lower() in lowered:
        index = lowered.index(wanted.lower())
    elif wanted.isdigit() and int(wanted) < len(names):
        index = int(wanted)
    else:
        allowed = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
        raise DataError(f"holdout_domain: '{domain}' is not a domain of dataset '{bundle.name}'. Allowed: {allowed}")
    pooled = ConcatTable([bundle.train, bundle.val])
    inside = np.flatnonzero(pooled.domains == index)
    outside = np.flatnonzero(pooled.domains != index)
    if len(inside) == 0:
        raise DataError(f"holdout_domain: domain '{names[index]}' has no images in dataset '{bundle.name}'")
    if len(outside) == 0:
        raise DataError(f"holdout_domain: every image of dataset '{bundle.name}' is in domain '{names[index]}'; "
                        "holding it out leaves nothing to train on")
    note = (f"leave-one-domain-out: domain '{names[index]}' ({len(inside)} images) is the validation split; "
            f"training on the other {len(names) - 1} domain(s) ({len(outside)} images)")
    return replace(bundle, train=pooled.subset(outside), val=pooled.subset(inside), notes=[*bundle.notes, note])
