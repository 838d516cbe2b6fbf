"""Issue 26.5: DeLong's test (fast form, Sun & Xu 2014) against a hand computation and the bootstrap."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.evaluation.delong import delong_test
from core.evaluation.metrics import bootstrap_weights, weighted_rank_metrics


def test_delong_matches_the_hand_computed_example():
    """Positives then negatives. Model A: positives 0.9, 0.6, negatives 0.7, 0.2; model B: positives
    0.8, 0.1, negatives 0.5, 0.3.
    V10 (per positive, share of negatives below): A [1, 0.5], B [1, 0]   -> AUROC 0.75 and 0.5
    V01 (per negative, share of positives above): A [0.5, 1], B [0.5, 0.5]
    S10 = cov over positives: var A 0.125, var B 0.5, cov 0.25; S01: var A 0.125, var B 0, cov 0
    S = S10/2 + S01/2: var A 0.125, var B 0.25, cov 0.125 -> var(B - A) = 0.125 + 0.25 - 0.25 = 0.125
    z = -0.25 / sqrt(0.125) = -0.7071, p = erfc(0.7071 / sqrt 2) = erfc(0.5) = 0.4795."""
    labels = np.array([1, 1, 0, 0])
    result = delong_test(np.array([0.9, 0.6, 0.7, 0.2]), np.array([0.8, 0.1, 0.5, 0.3]), labels)
    assert (result.auc_a, result.auc_b) == (0.75, 0.5)
    assert result.variance == pytest.approx(0.125)
    assert result.z == pytest.approx(-0.25 / math.sqrt(0.125))
    assert result.p_value == pytest.approx(math.erfc(0.5), abs=1e-12) and result.p_value == pytest.approx(0.4795, abs=1e-4)


def test_delong_agrees_with_the_paired_bootstrap_on_a_large_simulated_pair():
    rng = np.random.default_rng(1)
    n = 3000
    labels = rng.random(n) < 0.3
    shared = rng.normal(size=n)  # the two models see the same cases: correlated scores
    a = labels * 1.0 + shared + rng.normal(0, 0.7, n)
    b = labels * 1.2 + shared + rng.normal(0, 0.7, n)
    result = delong_test(a, b, labels)
    diffs = []
    for w in bootstrap_weights(np.arange(n), n, 400, seed=0):
        diffs.append(weighted_rank_metrics(b, labels, w)[0] - weighted_rank_metrics(a, labels, w)[0])
    diffs = np.concatenate(diffs)
    assert result.difference == pytest.approx(float(np.mean(diffs)), abs=0.005)
    assert math.sqrt(result.variance) == pytest.approx(float(np.std(diffs)), rel=0.15)
    assert result.p_value < 1e-3


def test_ties_count_one_half():
    result = delong_test(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.9, 0.6, 0.7, 0.2]), np.array([1, 1, 0, 0]))
    assert result.auc_a == 0.5 and result.auc_b == 0.75
