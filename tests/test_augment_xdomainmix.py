"""XDomainMix: importances, channel split, feature mixing, the training loss, real timm feature layouts, AMP."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from core.augment.feature_maps import feature_layout
from core.augment.xdomainmix import (
    XDomainMix,
    class_importance,
    ground_truth_score,
    mix_features,
    split_channels,
    tau_at,
)
from core.training.losses import BCEWithPosWeight, SoftTargetCrossEntropy
from core.models.build import build_model


class TinyNet(nn.Module):
    """Classifier-shaped toy: conv features in any layout, mean pool, linear head."""

    def __init__(self, channels=6, classes=3, layout="NCHW"):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc = nn.Linear(channels, classes)
        self.layout = layout
        self.backbone = nn.Identity()
        self.backbone.output_fmt = layout if layout != "NLC" else None

    def features(self, x):
        f = torch.relu(self.conv(x))
        if self.layout == "NHWC":
            return f.permute(0, 2, 3, 1)
        if self.layout == "NLC":
            return f.flatten(2).transpose(1, 2)
        return f

    def pool(self, f):
        return f.mean(dim={"NCHW": (2, 3), "NHWC": (1, 2), "NLC": (1,)}[self.layout])

    def head(self, v):
        return self.fc(v)

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


def batch(n=8, classes=3, multi_label=False, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = (torch.rand(n, classes, generator=g) > 0.5).float() if multi_label else torch.randint(0, classes, (n,), generator=g)
    d = torch.arange(n) % 3
    return x, y, d


def strategy(**kw):
    """The toy tests drive training_loss alone, so the domain head trains in the same pass (ours);
    the authors' after-the-update order is tested through after_optimizer_step below."""
    args = dict(num_classes=3, num_domains=3, multi_label=False, warmup_steps=0, domain_update="same_pass")
    args.update(kw)
    s = XDomainMix(**args)
    s.record = True
    return s


# ---------------------------------------------------------------- pieces, by hand
def test_tau_cycles_from_09_down_to_05_then_back():
    assert [tau_at(s, 3) for s in range(0, 18, 3)] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.9]
    assert tau_at(2, 3) == 0.9 and tau_at(299, 100) == 0.7


def test_split_channels_by_hand():
    class_imp = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    domain_imp = torch.tensor([[0.0, 5.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    cs, ds = split_channels(class_imp, domain_imp, 0.5)
    assert cs.tolist() == [[False, False, True, True], [True, True, False, False]]   # above the median
    assert ds.tolist() == [[False, True, False, True], [False, False, True, True]]   # above the tau quantile
    _, ds9 = split_channels(class_imp, domain_imp, 0.9)
    assert ds9[1].tolist() == [False, False, False, True]


def test_mix_features_by_hand():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])[:, :, None, None]
    cs = torch.tensor([[True, True, False, False], [True, False, True, False]])
    ds = torch.tensor([[True, False, True, False], [True, True, False, False]])
    j = k = torch.tensor([1, 0])
    l1, l2 = torch.tensor([0.25, 0.5]), torch.tensor([0.75, 1.0])
    out = mix_features(z, cs, ds, j, k, l1, l2, True, "NCHW")[:, :, 0, 0]
    # sample 0: csds={0}, cgds={2}, generic={1,3}; partner 1: csds={0}, cgds={1}
    # ch0 = .25*1 + .75*10; ch1 = 2 + (1-.75)*20 (partner's cgds); ch2 = .75*3; ch3 = 4
    assert torch.allclose(out[0], torch.tensor([0.25 + 7.5, 2 + 5.0, 2.25, 4.0]))
    # sample 1 (l2 = 1 keeps its own cgds): csds={0}, cgds={1}; partner 0: csds={0}, cgds={2}
    assert torch.allclose(out[1], torch.tensor([0.5 * 10 + 0.5 * 1, 20.0, 30.0, 40.0]))
    dropped = mix_features(z, cs, ds, j, k, l1, l2, False, "NCHW")[:, :, 0, 0]
    assert dropped[0, 0] == 0 and dropped[1, 0] == 0 and torch.equal(dropped[:, 1:], out[:, 1:])


def _to_layout(z, layout):
    return {"NCHW": z, "NHWC": z.permute(0, 2, 3, 1), "NLC": z.flatten(2).transpose(1, 2)}[layout]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(2, 9), hw=st.integers(1, 3), seed=st.integers(0, 10_000),
       keep=st.booleans(), layout=st.sampled_from(["NHWC", "NLC"]))
def test_mixing_identities_and_layout_equivariance(n, c, hw, seed, keep, layout):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, hw, hw, generator=g)
    cs, ds = torch.rand(n, c, generator=g) > 0.5, torch.rand(n, c, generator=g) > 0.5
    lam1, lam2 = torch.rand(n, generator=g), torch.rand(n, generator=g)
    me = torch.arange(n)
    # the four parts add back to Z when every partner is the sample itself
    same = mix_features(z, cs, ds, me, me, lam1, lam2, keep, "NCHW")
    expected = z if keep else z * (~(cs & ds))[:, :, None, None]
    assert torch.allclose(same, expected, atol=1e-6)
    # the same mix in NHWC / token layout is the permuted NCHW mix
    j, k = torch.randint(0, n, (n,), generator=g), torch.randint(0, n, (n,), generator=g)
    ref = mix_features(z, cs, ds, j, k, lam1, lam2, keep, "NCHW")
    other = mix_features(_to_layout(z, layout), cs, ds, j, k, lam1, lam2, keep, layout)
    assert torch.allclose(other, _to_layout(ref, layout), atol=1e-6)


def test_class_importance_is_gradient_times_activation():
    torch.manual_seed(0)
    net = TinyNet()
    x, y, _ = batch()
    z = net.features(x)
    imp = class_importance(z, net.head(net.pool(z)), y, False, "NCHW")
    s = z.shape[2] * z.shape[3]
    expected = net.fc.weight[y].detach() * z.detach().mean(dim=(2, 3)) / s   # d(mean pool)/dZ = 1/S
    assert torch.allclose(imp, expected, atol=1e-6)


def test_ground_truth_score_single_soft_and_multilabel():
    logits = torch.tensor([[1.0, -2.0, 3.0]])
    assert float(ground_truth_score(logits, torch.tensor([2]), False)) == 3.0
    assert float(ground_truth_score(logits, torch.tensor([[0.5, 0.5, 0.0]]), False)) == -0.5
    # multi-label: logit of each finding's true state, negatives included
    assert float(ground_truth_score(logits, torch.tensor([[1.0, 0.0, 1.0]]), True)) == 1.0 + 2.0 + 3.0
    assert float(ground_truth_score(logits, torch.tensor([[0.0, 0.0, 0.0]]), True)) == -1.0 + 2.0 - 3.0


# ---------------------------------------------------------------- the strategy on a toy net
def test_warmup_is_plain_erm_and_still_trains_the_domain_head():
    torch.manual_seed(0)
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    s = strategy(warmup_steps=5)
    loss, logits = s.training_loss(net, crit, x, y, d, step=4)
    assert torch.allclose(loss, crit(net(x), y)) and s.last_info == {}
    w0 = s.domain_head.linear.weight.detach().clone()
    s.training_loss(net, crit, x, y, d, step=4)
    assert not torch.equal(w0, s.domain_head.linear.weight)
    assert s.domain_head.linear.weight.grad is not None and net.conv.weight.grad is None  # detached: no backbone grad


def test_augmented_loss_is_half_original_half_mixed_and_uses_the_right_partners():
    torch.manual_seed(1)
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch(n=12)
    s = strategy()
    s.training_loss(net, crit, x, y, d, 0)  # creates the domain head
    loss, logits = s.training_loss(net, crit, x, y, d, 0)
    info = s.last_info
    expected = 0.5 * crit(net(x), y) + 0.5 * crit(net.head(net.pool(info["mixed"])), y)
    assert torch.allclose(loss, expected, atol=1e-6)
    j, k = info["j"], info["k"]
    for i in range(12):
        if ((y == y[i]) & (d != d[i])).any():
            assert y[j[i]] == y[i] and d[j[i]] != d[i]
        if ((y != y[i]) & (d != d[i])).any():
            assert y[k[i]] != y[i] and d[k[i]] != d[i]
    assert ((info["lam"] >= 0) & (info["lam"] <= 1)).all() and info["lam"].shape == (2, 12)
    assert info["tau"] == 0.9
    n_cs = info["cs"].sum(1)
    assert (n_cs <= 3).all()  # strictly above the median of 6 channels
    assert torch.allclose(info["ds"].float().mean(1), torch.full((12,), 1 / 6))  # top 10% of 6 -> 1 channel


def test_domain_importance_is_gradient_times_activation_of_the_domain_head():
    torch.manual_seed(2)
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    s = strategy()
    s.training_loss(net, crit, x, y, d, 0)
    w = s.domain_head.linear.weight.detach().clone()  # importance uses the head before this step's update
    s.training_loss(net, crit, x, y, d, 0)
    z = net.features(x).detach()
    expected = w[d] * z.mean(dim=(2, 3)) / (z.shape[2] * z.shape[3])
    assert torch.allclose(s.last_info["domain_imp"], expected, atol=1e-6)


def test_discard_probability_drops_the_csds_term():
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    for p, keep in ((1.0, False), (0.0, True)):
        s = strategy(discard_prob=p)
        s.training_loss(net, crit, x, y, d, 0)
        assert s.last_info["keep_csds"] is keep


def test_same_seed_same_loss_masks_and_partners():
    x, y, d = batch(n=10)

    def once():
        torch.manual_seed(123)
        net = TinyNet()
        s = strategy()
        out = [s.training_loss(net, SoftTargetCrossEntropy(3), x, y, d, st)[0] for st in range(3)]
        return out, s.last_info

    a, ia = once()
    b, ib = once()
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    for key in ("cs", "ds", "j", "k", "lam", "mixed"):
        assert torch.equal(ia[key], ib[key])


def test_gradients_reach_the_backbone_through_the_mixed_features():
    torch.manual_seed(3)
    net = TinyNet()
    seen = []

    def crit(logits, t):
        seen.append(logits)
        return F.cross_entropy(logits, t)

    x, y, d = batch()
    s = strategy()
    loss, _ = s.training_loss(net, crit, x, y, d, 0)
    (grad,) = torch.autograd.grad(seen[1].sum(), net.conv.weight, retain_graph=True)  # mixed-feature logits
    assert grad.abs().sum() > 0
    loss.backward()  # the class-gradient call kept the graph for the main backward
    assert net.conv.weight.grad.abs().sum() > 0 and net.fc.weight.grad.abs().sum() > 0


def test_single_domain_batch_and_batch_of_one_are_graceful():
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, _ = batch(n=6)
    s = strategy()
    loss, _ = s.training_loss(net, crit, x, y, torch.zeros(6, dtype=torch.long), 0)
    j = s.last_info["j"]
    for i in range(6):
        assert y[j[i]] == y[i] and (j[i] != i or (y == y[i]).sum() == 1)
    loss1, _ = s.training_loss(net, crit, x[:1], y[:1], torch.zeros(1, dtype=torch.long), 0)
    assert torch.isfinite(loss) and torch.isfinite(loss1) and s.last_info["j"].tolist() == [0]


def test_multilabel_partners_share_the_finding_set():
    torch.manual_seed(4)
    net, crit = TinyNet(), BCEWithPosWeight()
    x, _, d = batch(n=6)
    y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    d = torch.tensor([0, 1, 0, 1, 0, 1])
    s = strategy(multi_label=True)
    loss, logits = s.training_loss(net, crit, x, y, d, 0)
    assert s.last_info["j"].tolist() == [1, 0, 3, 2, 5, 4] and torch.isfinite(loss) and logits.shape == (6, 3)


def test_state_dict_round_trip_resumes_the_domain_head_exactly():
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    a = strategy()
    for step in range(3):
        a.training_loss(net, crit, x, y, d, step)
    saved_strategy, saved_head = copy.deepcopy(a.state_dict()), copy.deepcopy(a.domain_head.state_dict())
    b = strategy()
    b.load_state_dict(saved_strategy)          # the engine's order: strategy, then its modules
    b.domain_head.load_state_dict(saved_head)
    torch.manual_seed(9)
    a.training_loss(net, crit, x, y, d, 3)
    torch.manual_seed(9)
    b.training_loss(net, crit, x, y, d, 3)
    assert torch.equal(a.domain_head.linear.weight, b.domain_head.linear.weight)
    assert a.state_dict()["domain_optimizer"]["state"][0]["step"] == 4


# ---------------------------------------------------------------- real timm backbones
MODELS = {
    "resnet18": (32, "NCHW"), "vit_tiny_patch16_224": (32, "NLC"), "swin_tiny_patch4_window7_224": (64, "NHWC"),
    "convnext_atto": (32, "NCHW"), "mobilenetv3_small_050": (32, "NCHW"), "efficientnet_b0": (32, "NCHW"),
    "deit_tiny_patch16_224": (32, "NLC"),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(name, 3, "full_finetune", img_size=size) for name, (size, _) in MODELS.items()}


CASES = [(name, multi) for name in MODELS for multi in (False, True)]


@pytest.mark.parametrize("name,multi_label", CASES, ids=[f"{n}-{'multi' if m else 'single'}" for n, m in CASES])
def test_real_backbones_feature_layouts_losses_and_gradients(models, name, multi_label):
    size, layout = MODELS[name]
    model = models[name]
    model.zero_grad(set_to_none=True)
    x, y, d = batch(n=6, multi_label=multi_label, size=size)
    crit = BCEWithPosWeight() if multi_label else SoftTargetCrossEntropy(3)
    s = strategy(multi_label=multi_label)
    loss, logits = s.training_loss(model, crit, x, y, d, 0)
    feats = model.features(x)
    assert feature_layout(feats, model.backbone) == layout
    info = s.last_info
    assert info["mixed"].shape == feats.shape and info["cs"].shape == (6, model.backbone.num_features)
    assert logits.shape == (6, 3) and torch.isfinite(loss)
    loss.backward()
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"])
def test_bf16_autocast(models, name):
    size, _ = MODELS[name]
    model = models[name]
    model.zero_grad(set_to_none=True)
    x, y, d = batch(n=6, size=size)
    s = strategy(pixel_mix=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = s.training_loss(model, SoftTargetCrossEntropy(3), x, y, d, 0)
        feats_dtype = model.features(x).dtype
    assert torch.isfinite(loss) and s.last_info["mixed"].dtype == feats_dtype
    assert s.last_info["class_imp"].dtype == torch.float32 and s.domain_head.linear.weight.dtype == torch.float32
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_linear_probe_trains_only_the_head(models):
    torch.manual_seed(0)
    model = build_model("resnet18", 3, "linear_probe", img_size=32)
    model.train()
    x, y, d = batch(n=6, size=32)
    s = strategy()
    loss, _ = s.training_loss(model, SoftTargetCrossEntropy(3), x, y, d, 0)
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.classifier[1].weight.grad.abs().sum() > 0 and "mixed" in s.last_info


def test_authors_order_trains_the_domain_head_after_the_update_on_updated_features():
    """Issue 12.6, the authors' default: training_loss leaves the domain head alone; after the model's
    optimizer step, one Adam step (main LR and weight decay) on the updated backbone's features."""
    torch.manual_seed(3)
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    s = XDomainMix(3, 3, False, warmup_steps=0, main_lr=0.05, main_weight_decay=0.01)
    s.begin_step()
    loss, _ = s.training_loss(net, crit, x, y, d, 0)
    w0 = s.domain_head.linear.weight.detach().clone()
    assert s._optimizer is None  # nothing trained yet
    main = torch.optim.SGD(net.parameters(), lr=0.5)
    loss.backward()
    main.step()
    # expected: one Adam step from w0 on the *updated* features
    ref = torch.nn.Linear(w0.shape[1], 3)
    ref.load_state_dict(s.domain_head.linear.state_dict())
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=0.01)
    with torch.no_grad():
        z = net.features(x).mean(dim=(2, 3))
    torch.nn.functional.cross_entropy(ref(z), d).backward()
    ref_opt.step()
    s.after_optimizer_step(net)
    assert not torch.equal(w0, s.domain_head.linear.weight)
    assert torch.allclose(s.domain_head.linear.weight, ref.weight, atol=1e-6)
    group = s._optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.01)
    ours = XDomainMix(3, 3, False, domain_lr=1e-3, main_lr=0.05, main_weight_decay=0.01)
    assert ours.domain_adam == (1e-3, 0.0)


def test_state_dict_after_load_returns_the_loaded_optimizer_state():
    """Issue 12.6: a checkpoint written after a resume and before the first step kept None."""
    net, crit = TinyNet(), SoftTargetCrossEntropy(3)
    x, y, d = batch()
    a = strategy()
    for step in range(2):
        a.training_loss(net, crit, x, y, d, step)
    saved = copy.deepcopy(a.state_dict())
    b = strategy()
    b.load_state_dict(saved)
    assert b.state_dict()["domain_optimizer"] is not None
    assert b.state_dict()["domain_optimizer"]["state"][0]["step"] == 2
