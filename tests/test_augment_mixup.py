"""Partner choice, input mixup and the strategy registry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core.augment import BatchStrategy, build_strategy, strategy_names
from core.augment.mixup import Mixup, draw_beta, mix_batch, to_soft_targets
from core.augment.partners import (
    cross_domain_partners,
    label_keys,
    other_class_partners,
    same_class_partners,
    tiered_partners,
)
from core.augment.pipmix import PipMix
from core.augment.xdomainmix import XDomainMix
from core.config import TrainConfig

labels_and_domains = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 2), min_size=n, max_size=n), st.lists(st.integers(0, 2), min_size=n, max_size=n)))


# ---------------------------------------------------------------- partners
@settings(max_examples=60, deadline=None)
@given(labels_and_domains, st.integers(0, 10_000))
def test_same_class_partner_prefers_other_domain(ld, seed):
    y, d = torch.tensor(ld[0]), torch.tensor(ld[1])
    torch.manual_seed(seed)
    j = same_class_partners(y, d)
    for i in range(len(y)):
        same = (y == y[i]) & (torch.arange(len(y)) != i)
        if (same & (d != d[i])).any():
            assert y[j[i]] == y[i] and d[j[i]] != d[i]
        elif same.any():
            assert y[j[i]] == y[i] and j[i] != i
        else:
            assert j[i] == i  # graceful: no partner in the batch -> itself


@settings(max_examples=60, deadline=None)
@given(labels_and_domains, st.integers(0, 10_000))
def test_other_class_partner_tiers(ld, seed):
    y, d = torch.tensor(ld[0]), torch.tensor(ld[1])
    torch.manual_seed(seed)
    k = other_class_partners(y, d)
    for i in range(len(y)):
        if ((y != y[i]) & (d != d[i])).any():
            assert y[k[i]] != y[i] and d[k[i]] != d[i]
        elif (d != d[i]).any():
            assert d[k[i]] != d[i]
        elif (y != y[i]).any():
            assert y[k[i]] != y[i]
        else:
            assert k[i] == i


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=16), st.integers(0, 10_000))
def test_cross_domain_partner_and_determinism(domains, seed):
    d = torch.tensor(domains)
    torch.manual_seed(seed)
    p = cross_domain_partners(d)
    torch.manual_seed(seed)
    assert torch.equal(p, cross_domain_partners(d))
    for i in range(len(d)):
        if (d != d[i]).any():
            assert d[p[i]] != d[i]
        elif len(d) > 1:
            assert p[i] != i
        else:
            assert p[i] == i


def test_partner_is_uniform_over_the_best_tier():
    d = torch.tensor([0, 1, 1, 1, 0])
    seen = {int(cross_domain_partners(d)[0]) for _ in range(200)}
    assert seen == {1, 2, 3}


def test_multilabel_same_class_means_same_finding_set():
    y = torch.tensor([[1, 0, 1], [1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    keys = label_keys(y)
    assert keys[0, 1] and not keys[0, 2] and keys[3, 4] and not keys[2, 3]
    d = torch.tensor([0, 1, 1, 0, 1])
    j = same_class_partners(y, d)
    assert j.tolist() == [1, 0, 2, 4, 3]  # finding set {0,2} pairs across domains; {0} has no partner


def test_tiered_partners_on_device_tensors_keep_device():
    tier = torch.ones(3, 3, dtype=torch.bool)
    assert tiered_partners([tier]).device == tier.device


# ---------------------------------------------------------------- mixup
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 10), st.integers(2, 5), st.floats(0.05, 4.0), st.booleans(), st.integers(0, 10_000))
def test_mixup_targets_shape_sum_and_lambda(n, c, alpha, multi_label, seed):
    torch.manual_seed(seed)
    lam = float(draw_beta(alpha)[0])
    assert 0.0 <= lam <= 1.0
    y = (torch.rand(n, c) > 0.5).float() if multi_label else torch.randint(0, c, (n,))
    soft = to_soft_targets(y, c, multi_label)
    partners = torch.randperm(n)
    x = torch.randn(n, 3, 4, 4)
    mx, my = mix_batch(x, soft, lam, partners)
    assert mx.shape == x.shape and my.shape == (n, c)
    assert torch.allclose(my, lam * soft + (1 - lam) * soft[partners])
    assert torch.allclose(mx, lam * x + (1 - lam) * x[partners], atol=1e-6)
    if not multi_label:
        assert torch.allclose(my.sum(1), torch.ones(n))
    assert (my >= 0).all() and (my <= 1 + 1e-6).all()


class Recorder(torch.nn.Module):
    """A model that remembers what it saw."""

    def __init__(self, c):
        super().__init__()
        self.lin = torch.nn.Linear(3, c)
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.lin(x.mean(dim=(2, 3)))


def test_mixup_prob_zero_is_plain_erm_and_prob_one_mixes_across_domains():
    torch.manual_seed(0)
    # class == domain here, so every cross-domain partner has the other class and t[i, y_i] = lambda
    x, y, d = torch.randn(6, 3, 4, 4), torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 1, 1])
    model = Recorder(2)
    seen_targets = []
    crit = lambda logits, t: (seen_targets.append(t), F.cross_entropy(logits, t))[1]  # noqa: E731
    Mixup(2, False, 0.4, 0.0, True).training_loss(model, crit, x, y, d, 0)
    assert torch.equal(model.seen, x) and torch.equal(seen_targets[-1], y)
    Mixup(2, False, 0.4, 1.0, True).training_loss(model, crit, x, y, d, 0)
    t = seen_targets[-1]
    assert t.shape == (6, 2) and torch.allclose(t.sum(1), torch.ones(6))
    lam = t[0, 0]
    assert torch.allclose(t[torch.arange(6), y], lam.expand(6))  # one lambda per batch
    for i in range(6):
        assert any(torch.allclose(model.seen[i], lam * x[i] + (1 - lam) * x[p], atol=1e-5)
                   for p in range(6) if d[p] != d[i])


# ---------------------------------------------------------------- registry
def test_registered_strategies_and_mapping():
    assert {"erm", "mixup", "pipmix", "xdomainmix", "xdomainmix+pipmix"} <= set(strategy_names())
    cfg = TrainConfig(augmentation="standard")
    assert type(build_strategy(cfg, 3, 4, False)) is BatchStrategy
    assert isinstance(build_strategy(TrainConfig(augmentation="none", mixup_alpha=0.2), 3, 4, False), Mixup)
    assert isinstance(build_strategy(TrainConfig(augmentation="pipmix"), 3, 4, False), PipMix)
    xdm = build_strategy(TrainConfig(augmentation="xdomainmix+pipmix", mixup_alpha=0.3, mixup_prob=0.5), 3, 4, True)
    assert isinstance(xdm, XDomainMix) and isinstance(xdm.pixel_mix, PipMix)
    assert xdm.prob == 0.5 and xdm.lam_alpha == 0.3 and xdm.pixel_mix.alpha == 0.3 and xdm.pixel_mix.prob == 0.5
    assert build_strategy(TrainConfig(augmentation="xdomainmix"), 3, 4, False).lam_alpha is None  # U(0,1)


@pytest.mark.parametrize("aug", ["xdomainmix", "xdomainmix+pipmix"])
def test_no_domain_labels_fall_back_to_cross_domain_mixup_with_a_note(aug):
    strategy = build_strategy(TrainConfig(augmentation=aug), 3, 1, False)
    assert isinstance(strategy, Mixup) and strategy.cross_domain
    assert any("XDomainMix needs domain labels" in n for n in strategy.notes)
    assert (strategy.pixel_mix is not None) == (aug == "xdomainmix+pipmix")
    x, y, d = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), torch.zeros(4, dtype=torch.long)
    loss, logits = strategy.training_loss(Recorder(3), F.cross_entropy, x, y, d, 0)
    assert logits.shape == (4, 3) and torch.isfinite(loss)
