"""Losses against hand-computed values on tiny tensors, plus the properties the engine relies on."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import TrainConfig
from core.training.losses import (
    AsymmetricLoss,
    BCEWithPosWeight,
    SigmoidFocalLoss,
    SoftTargetCrossEntropy,
    build_loss,
    class_weights_from_counts,
    loss_names,
    pos_weight_from_counts,
)

LOG2 = math.log(2.0)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- cross-entropy
def test_ce_index_target_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    z = math.exp(1.0) + math.exp(2.0) + math.exp(0.5)
    expected = -math.log(math.exp(2.0) / z)
    assert float(SoftTargetCrossEntropy(3)(logits, torch.tensor([1]))) == pytest.approx(expected, rel=1e-6)


def test_ce_label_smoothing_by_hand_and_matches_torch():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = torch.tensor([1, 2])
    e = 0.1
    logp = F.log_softmax(logits, -1)
    t = torch.full((2, 3), e / 3) + (1 - e) * F.one_hot(y, 3)
    expected = float(-(t * logp).sum(-1).mean())
    got = float(SoftTargetCrossEntropy(3, label_smoothing=e)(logits, y))
    assert got == pytest.approx(expected, rel=1e-6)
    assert got == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=e)), rel=1e-6)


def test_class_weights_inverse_frequency_mean_one():
    counts = np.array([10.0, 30.0, 60.0])
    w = class_weights_from_counts(counts, 100)
    assert torch.allclose(w, torch.tensor([100 / 30, 100 / 90, 100 / 180]))
    assert float((torch.tensor(counts) * w.double()).sum() / 100) == pytest.approx(1.0)  # mean weight over images
    assert torch.isfinite(class_weights_from_counts(np.array([0.0, 5.0]), 5)).all()  # empty class: no inf


def test_ce_class_weights_by_hand():
    w = torch.tensor([2.0, 1.0, 0.5])
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    # per image: w_y * -log p_y; mean over images (not over summed weights)
    p2 = math.exp(0.0) / (math.e + 2.0)
    expected = (2.0 * math.log(3.0) + 0.5 * -math.log(p2)) / 2
    assert float(SoftTargetCrossEntropy(3, weight=w)(logits, y)) == pytest.approx(expected, rel=1e-6)


def test_ce_soft_target_is_linear_in_the_target():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    a, b = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2])
    loss = SoftTargetCrossEntropy(3, weight=torch.tensor([1.5, 1.0, 0.7]))
    soft = 0.3 * F.one_hot(a, 3).float() + 0.7 * F.one_hot(b, 3).float()
    assert float(loss(logits, soft)) == pytest.approx(0.3 * float(loss(logits, a)) + 0.7 * float(loss(logits, b)), rel=1e-5)


# ---------------------------------------------------------------- BCE
def test_pos_weight_from_counts_clamped():
    pw = pos_weight_from_counts(np.array([1.0, 50.0, 90.0, 0.0]), 100)
    assert torch.allclose(pw, torch.tensor([99.0, 1.0, 1.0, 99.0]))
    assert float(pos_weight_from_counts(np.array([1.0]), 10_000)[0]) == 100.0


def test_bce_pos_weight_and_smoothing_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    loss = BCEWithPosWeight(pos_weight=torch.tensor([3.0, 1.0]))
    expected = (3.0 * LOG2 + -math.log(1 - sig(2.0))) / 2
    assert float(loss(logits, y)) == pytest.approx(expected, rel=1e-6)
    smooth = BCEWithPosWeight(label_smoothing=0.2)  # y -> y*0.8 + 0.1
    t = torch.tensor([[0.9, 0.1]])
    assert float(smooth(logits, y)) == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, t)), rel=1e-6)


# ---------------------------------------------------------------- focal
def test_focal_by_hand():
    # x=0: p=0.5, ce=log2, (1-p_t)^2=0.25; alpha 0.25 for positives, 0.75 for negatives.
    logits = torch.tensor([[0.0, 0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    p = sig(2.0)
    expected = 0.25 * LOG2 * 0.25 + 0.75 * LOG2 * 0.25 + 0.25 * -math.log(p) * (1 - p) ** 2
    assert float(SigmoidFocalLoss(0.25, 2.0)(logits, y)) == pytest.approx(expected, rel=1e-6)


def test_focal_gamma0_alpha_half_is_half_summed_bce():
    torch.manual_seed(1)
    logits, y = torch.randn(5, 4), (torch.rand(5, 4) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1).mean()
    assert float(SigmoidFocalLoss(0.5, 0.0)(logits, y)) == pytest.approx(0.5 * float(bce), rel=1e-5)


def test_focal_single_label_uses_one_hot_and_accepts_soft():
    torch.manual_seed(2)
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 3, 1])
    loss = SigmoidFocalLoss()
    assert float(loss(logits, y)) == pytest.approx(float(loss(logits, F.one_hot(y, 4).float())), rel=1e-6)
    soft = torch.full((3, 4), 0.25)
    assert math.isfinite(float(loss(logits, soft)))


# ---------------------------------------------------------------- ASL
def test_asl_by_hand():
    # positive at x=0: gamma_pos 0 -> plain -log(0.5).
    # negative at x=0: p_m = 0.5 - 0.05 = 0.45 -> -(0.45^4) * log(0.55).
    # easy negative at x=-5: p = 0.0067 < clip -> p_m = 0 -> exactly 0.
    logits = torch.tensor([[0.0, 0.0, -5.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    expected = LOG2 + -(0.45 ** 4) * math.log(0.55)
    assert float(AsymmetricLoss()(logits, y)) == pytest.approx(expected, rel=1e-6)
    assert float(AsymmetricLoss()(torch.tensor([[-5.0]]), torch.tensor([[0.0]]))) == 0.0


def _asl_paper(logits, y, gn=4.0, gp=0.0, clip=0.05, eps=1e-8):
    """The paper's formulation (p_t and a per-element gamma), summed over classes, mean over images."""
    xs_pos = torch.sigmoid(logits)
    xs_neg = (1 - xs_pos + clip).clamp(max=1)
    los = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    pt = xs_pos * y + xs_neg * (1 - y)
    w = torch.pow(1 - pt, gp * y + gn * (1 - y))
    return -(los * w).sum(-1).mean()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_asl_matches_paper_formula_on_hard_targets(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 3
    y = (torch.rand(n, c, generator=g) > 0.6).float()
    assert float(AsymmetricLoss()(logits, y)) == pytest.approx(float(_asl_paper(logits, y)), rel=1e-4, abs=1e-6)


def test_asl_gamma0_no_clip_is_summed_bce():
    torch.manual_seed(3)
    logits, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1).mean()
    assert float(AsymmetricLoss(0.0, 0.0, 0.0)(logits, y)) == pytest.approx(float(bce), rel=1e-5)


# ---------------------------------------------------------------- shared properties
@pytest.mark.parametrize("loss", [SoftTargetCrossEntropy(3, 0.1, torch.tensor([1.0, 2.0, 0.5])),
                                  BCEWithPosWeight(torch.tensor([2.0, 1.0, 5.0])), SigmoidFocalLoss(), AsymmetricLoss()],
                         ids=["ce", "bce", "focal", "asl"])
def test_batch_mean_reduction_is_batch_size_invariant(loss):
    """Engine micro-batching (OOM split, accumulation) relies on per-image mean reduction."""
    torch.manual_seed(4)
    logits = torch.randn(6, 3)
    y = F.one_hot(torch.tensor([0, 1, 2, 2, 1, 0]), 3).float()
    whole = float(loss(logits, y))
    halves = (float(loss(logits[:2], y[:2])) * 2 + float(loss(logits[2:], y[2:])) * 4) / 6
    assert whole == pytest.approx(halves, rel=1e-5)


@pytest.mark.parametrize("name", ["focal", "asl", "bce"])
def test_losses_work_under_bf16_autocast(name):
    crit = build_loss(TrainConfig(loss=name), 3, np.array([5.0, 2.0, 1.0]), 10)
    layer = torch.nn.Linear(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(torch.randn(2, 4))
        loss = crit(logits, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


def test_registry_builds_every_loss_from_config():
    assert set(loss_names()) >= {"ce", "bce", "focal", "asl"}
    counts, n = np.array([10.0, 30.0, 60.0]), 100
    ce = build_loss(TrainConfig(loss="ce"), 3, counts, n)
    assert ce.weight is None
    weighted = build_loss(TrainConfig(loss="ce", class_weights=True, label_smoothing=0.1), 3, counts, n)
    assert torch.allclose(weighted.weight, class_weights_from_counts(counts, n)) and weighted.label_smoothing == 0.1
    focal = build_loss(TrainConfig(loss="focal", focal_alpha=0.5, focal_gamma=1.0), 3, counts, n)
    assert (focal.alpha, focal.gamma) == (0.5, 1.0)
    asl = build_loss(TrainConfig(loss="asl"), 3, counts, n)
    assert (asl.gamma_neg, asl.gamma_pos, asl.clip) == (4.0, 0.0, 0.05)
    bce = build_loss(TrainConfig(loss="bce"), 3, counts, n)
    assert torch.allclose(bce.pos_weight, torch.tensor([9.0, 70 / 30, 1.0]))
