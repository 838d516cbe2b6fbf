"""DeLong's test for two correlated AUROCs on the same cases, in the fast O(N log N) form of
Sun & Xu (IEEE Signal Processing Letters 2014): structural components from midranks, their
covariance, and a two-sided z-test of the difference."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j < len(x) and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(len(x), dtype=np.float64)
    out[order] = ranks
    return out


def structural_components(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each model (rows of `scores`, shape (k, N)): AUROC, V10 (per positive: the share of negatives
    it outranks, ties half) and V01 (per negative: the share of positives that outrank it)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.asarray(labels, dtype=bool)
    pos, neg = scores[:, labels], scores[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs positives and negatives")
    v10 = np.empty((len(scores), m))
    v01 = np.empty((len(scores), n))
    aucs = np.empty(len(scores))
    for k in range(len(scores)):
        tx, ty = midranks(pos[k]), midranks(neg[k])
        tz = midranks(np.concatenate([pos[k], neg[k]]))
        aucs[k] = tz[:m].sum() / (m * n) - (m + 1) / (2 * n)
        v10[k] = (tz[:m] - tx) / n
        v01[k] = 1.0 - (tz[m:] - ty) / m
    return aucs, v10, v01


@dataclass(frozen=True)
class DelongResult:
    auc_a: float
    auc_b: float
    difference: float
    """auc_b - auc_a"""
    variance: float
    """Variance of the difference."""
    z: float
    p_value: float


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> DelongResult:
    """Two-sided DeLong test of AUROC(b) - AUROC(a) on the same cases."""
    aucs, v10, v01 = structural_components(np.stack([scores_a, scores_b]), labels)
    m, n = v10.shape[1], v01.shape[1]
    cov = (np.cov(v10) if m > 1 else np.zeros((2, 2))) / m + (np.cov(v01) if n > 1 else np.zeros((2, 2))) / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    difference = float(aucs[1] - aucs[0])
    if variance <= 1e-15:
        z = 0.0 if abs(difference) < 1e-12 else math.copysign(math.inf, difference)
    else:
        z = difference / math.sqrt(variance)
    return DelongResult(float(aucs[0]), float(aucs[1]), difference, variance, z, math.erfc(abs(z) / math.sqrt(2)))
