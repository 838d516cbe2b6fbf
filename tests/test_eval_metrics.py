"""Evaluation metrics on hand-computed cases: perfect, inverted, tied, random, one-class, bootstrap units."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from core.evaluation.metrics import (
    BootstrapSettings,
    auroc,
    average_precision,
    calibration,
    evaluate_probabilities,
    threshold_metrics,
)
from core.evaluation.thresholds import choose_threshold, choose_thresholds

Y = np.array([0, 0, 1, 1])


def test_perfect_inverted_tied_and_textbook_scores():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), Y) == 1.0
    assert average_precision(np.array([0.1, 0.2, 0.8, 0.9]), Y) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), Y) == 0.0
    # ranking neg, neg, pos, pos: precision 1/3 at recall 1/2, 2/4 at recall 1
    assert average_precision(np.array([0.9, 0.8, 0.2, 0.1]), Y) == pytest.approx(0.5 / 3 + 0.5 / 2)
    # all tied: every pair counts one half; AP is the prevalence
    assert auroc(np.full(4, 0.5), Y) == 0.5
    assert average_precision(np.full(4, 0.5), Y) == 0.5
    # the classic 4-sample example: 3 of 4 (pos, neg) pairs ordered right; AP = 1/2 * 1 + 1/2 * 2/3
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert auroc(s, Y) == 0.75
    assert average_precision(s, Y) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_random_scores_with_ties_agree_with_torchmetrics():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, 500) / 20.0  # many ties
    labels = rng.random(500) < 0.3
    ref = float(binary_auroc(torch.tensor(scores), torch.tensor(labels).long()))
    assert auroc(scores, labels) == pytest.approx(ref, abs=1e-6)
    ref_ap = float(binary_average_precision(torch.tensor(scores), torch.tensor(labels).long()))
    assert average_precision(scores, labels) == pytest.approx(ref_ap, abs=1e-6)
    assert abs(auroc(rng.random(500), labels) - 0.5) < 0.08


def test_threshold_metrics_and_undefined_denominators():
    m = threshold_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert m == {"sensitivity": 0.5, "specificity": 0.5, "ppv": 0.5, "npv": 0.5, "f1": 0.5}
    none_positive = threshold_metrics(np.array([0, 1, 0]), np.array([0, 0, 0]))
    assert none_positive["sensitivity"] is None and none_positive["f1"] is None
    assert none_positive["specificity"] == pytest.approx(2 / 3) and none_positive["ppv"] == 0.0


def test_one_class_split_is_undefined_never_half_and_left_out_of_macro():
    probs = np.array([[0.9, 0.2], [0.8, 0.1], [0.3, 0.7], [0.1, 0.6]])
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float32)  # class 1 has no positive
    rep = evaluate_probabilities(probs, targets, ["a", "b"], True, bootstrap=BootstrapSettings(n=50, seed=0))
    b = rep["per_class"]["b"]
    assert b["auroc"]["value"] is None and b["ap"]["value"] is None and b["sensitivity"]["value"] is None
    assert b["auroc"]["ci"] is None and b["roc"] is None
    assert b["positives"] == 0 and b["negatives"] == 4
    assert rep["per_class"]["a"]["auroc"]["value"] == 1.0
    assert rep["macro"]["auroc"]["value"] == 1.0  # mean of the defined class only
    assert choose_threshold(probs[:, 1], targets[:, 1]) is None


def test_calibration_ece_and_bins():
    cal = calibration(np.full(10, 0.9), np.array([1] * 5 + [0] * 5))
    assert cal["ece"] == pytest.approx(0.4)
    assert [b["count"] for b in cal["bins"]][8] == 10 and cal["bins"][8]["observed"] == 0.5
    assert calibration(np.array([0.0, 1.0]), np.array([0, 1]))["ece"] == 0.0


def test_single_label_confusion_matrix_accuracy_and_binary_threshold():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    rep = evaluate_probabilities(probs, np.array([0, 1, 2, 1]), ["n", "x", "y"], False)
    assert rep["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert rep["accuracy"]["value"] == 0.75
    assert rep["per_class"]["x"]["sensitivity"]["value"] == 0.5
    binary = np.array([[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    low = evaluate_probabilities(binary, np.array([1, 0, 1]), ["neg", "pos"], False, thresholds=[None, 0.35])
    assert low["confusion_matrix"] == [[1, 0], [0, 2]]  # p1 >= 0.35 flips the first image to positive


def _bootstrap_case(patients):
    rng = np.random.default_rng(0)
    base_scores = rng.random(10)
    base_labels = np.array([0, 1] * 5)
    scores = np.repeat(base_scores, 10)
    labels = np.repeat(base_labels, 10)
    probs = np.stack([1 - scores, scores], axis=1)
    targets = np.stack([1 - labels, labels], axis=1).astype(np.float32)
    return evaluate_probabilities(probs, targets, ["a", "b"], True, patients=patients,
                                  bootstrap=BootstrapSettings(n=300, seed=1))


def test_patient_bootstrap_is_wider_when_images_of_a_patient_are_copies():
    per_patient = _bootstrap_case([f"p{i // 10}" for i in range(100)])
    per_image = _bootstrap_case(None)
    assert per_patient["bootstrap"]["unit"] == "patient" and per_image["bootstrap"]["unit"] == "image"
    lo_p, hi_p = per_patient["per_class"]["b"]["auroc"]["ci"]
    lo_i, hi_i = per_image["per_class"]["b"]["auroc"]["ci"]
    assert per_patient["per_class"]["b"]["auroc"]["value"] == per_image["per_class"]["b"]["auroc"]["value"]
    assert (hi_p - lo_p) > 2 * (hi_i - lo_i)


def test_one_image_per_patient_resamples_exactly_like_images():
    a = _bootstrap_case([f"p{i}" for i in range(100)])
    b = _bootstrap_case(None)
    assert a["per_class"]["b"]["auroc"]["ci"] == b["per_class"]["b"]["auroc"]["ci"]
    again = _bootstrap_case(None)  # seeded: the same interval twice
    assert again["macro"]["auroc"]["ci"] == b["macro"]["auroc"]["ci"]


def test_per_domain_figures():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    rep = evaluate_probabilities(probs, np.array([0, 1, 1, 0]), ["n", "p"], False,
                                 domains=np.array([0, 0, 1, 1]), domain_names=["A", "B"])
    assert rep["per_domain"]["A"]["accuracy"]["value"] == 1.0
    assert rep["per_domain"]["B"]["accuracy"]["value"] == 0.0
    assert rep["per_domain"]["B"]["per_class"]["p"]["auroc"]["value"] == 0.0


def test_thresholds_youden_f1_and_target_sensitivity():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([0, 1, 1, 0, 0, 1, 1, 1])  # 5 positives, 3 negatives
    # J: 0.6 -> 3/5 + 3/3 - 1 = 0.6 (best); 0.2 -> 1 + 1/3 - 1. F1: 0.6 -> 6/8; 0.2 -> 10/12 (best)
    assert choose_threshold(scores, labels, "youden") == 0.6
    assert choose_threshold(scores, labels, "f1") == 0.2
    assert choose_threshold(scores, labels, "sensitivity", 0.95) == 0.2
    assert choose_threshold(scores, labels, "sensitivity", 0.5) == 0.6  # 0.7 reaches only 2/5
    probs = np.stack([1 - scores, scores], 1)
    chosen = choose_thresholds(probs, labels, ["neg", "pos"], False, "youden")
    assert chosen["pos"] == 0.6


def test_bootstrap_weights_score_like_the_resampled_images():
    """The vectorised bootstrap (multiplicities) equals scoring each resample's index list."""
    from core.evaluation.metrics import bootstrap_groups, bootstrap_weights, weighted_rank_metrics

    rng = np.random.default_rng(5)
    scores, labels = rng.integers(0, 6, 30) / 6.0, rng.random(30) < 0.4
    patients = [f"p{i // 3}" for i in range(30)]
    unit, n_units, _ = bootstrap_groups(patients, 30)
    w = next(bootstrap_weights(unit, n_units, 5, seed=2))
    auc, ap = weighted_rank_metrics(scores, labels, w)
    for row in range(5):
        idx = np.repeat(np.arange(30), w[row].astype(int))
        assert auc[row] == pytest.approx(auroc(scores[idx], labels[idx]))
        assert ap[row] == pytest.approx(average_precision(scores[idx], labels[idx]))
        # whole patients: the three images of a patient always share a multiplicity
        assert np.all(w[row].reshape(10, 3) == w[row].reshape(10, 3)[:, :1])
