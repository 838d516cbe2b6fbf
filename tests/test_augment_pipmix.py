"""PipMix: which pixels change, by how much, and the target weight that follows."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core.augment.mixup import to_soft_targets
from core.augment.pipmix import PipMix, patch_grid, pipmix_batch


def test_patch_grid_exact_and_small_images():
    cells, n = patch_grid(64, 96, 32)
    assert n == 2 * 3 and cells[0, 0] == 0 and cells[31, 31] == 0 and cells[32, 0] == 3 and cells[0, 95] == 2
    assert torch.equal(torch.bincount(cells.flatten()), torch.full((6,), 32 * 32))
    cells, n = patch_grid(32, 32, 32)  # at least 2 x 2 cells, so n ~ U{1, N/2} does not cover the image
    assert n == 4 and torch.equal(torch.bincount(cells.flatten()), torch.full((4,), 16 * 16))
    cells, n = patch_grid(100, 100, 32)  # 3 x 3 cells of 33-34 px
    sizes = torch.bincount(cells.flatten())
    assert n == 9 and sizes.min() >= 33 * 33 and sizes.max() <= 34 * 34


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 6), h=st.integers(8, 40), w=st.integers(8, 40), patch=st.integers(2, 16),
       alpha=st.floats(0.1, 3.0), multi_label=st.booleans(), seed=st.integers(0, 10_000))
def test_pipmix_pixels_targets_and_weights(n, h, w, patch, alpha, multi_label, seed):
    torch.manual_seed(seed)
    c = 4
    y = (torch.rand(n, c) > 0.5).float() if multi_label else torch.randint(0, c, (n,))
    soft = to_soft_targets(y, c, multi_label)
    anchor = torch.zeros(n, 3, h, w)
    partner_img = torch.ones(n, 3, h, w)
    images = torch.cat([anchor, partner_img])          # sample i's partner is i + n
    soft2 = torch.cat([soft, soft.flip(0)])
    partners = torch.cat([torch.arange(n) + n, torch.arange(n)])
    mixed, targets, weight = pipmix_batch(images, soft2, partners, alpha, patch)
    assert mixed.shape == images.shape and targets.shape == (2 * n, c) and weight.shape == (2 * n,)
    cells, n_cells = patch_grid(h, w, patch)
    share = mixed[:n, 0]                               # partner share per pixel of the anchors
    # the weight is exactly the replaced pixel mass: mean of (1 - lambda) over the chosen cells
    assert torch.allclose(share.mean(dim=(1, 2)), weight[:n], atol=1e-5)
    # at most half the cells (the largest ones when P does not divide the image) at full strength
    sizes = torch.bincount(cells.flatten()).sort(descending=True).values
    bound = float(sizes[: max(1, n_cells // 2)].sum()) / (h * w)
    assert (weight >= 0).all() and (weight <= bound + 1e-6).all()
    for i in range(n):
        changed_cells = torch.unique(cells[share[i] > 0])
        # each cell is either untouched or blended with one lambda over the whole cell
        values = torch.unique(share[i][share[i] > 0])
        assert values.numel() <= 1
        if values.numel():
            assert 1 <= changed_cells.numel() <= max(1, n_cells // 2)
            whole = torch.isin(cells, changed_cells)
            assert torch.equal(whole, share[i] > 0)
    assert torch.allclose(targets, soft2 * (1 - weight[:, None]) + soft2[partners] * weight[:, None], atol=1e-6)
    if not multi_label:
        assert torch.allclose(targets.sum(1), torch.ones(2 * n), atol=1e-6)
    assert (targets >= -1e-6).all() and (targets <= 1 + 1e-6).all()


def test_weight_formula_on_exact_grid():
    """w = n_replaced * (1 - lambda) / N when the patch divides the image."""
    torch.manual_seed(3)
    images = torch.cat([torch.zeros(8, 1, 64, 64), torch.ones(8, 1, 64, 64)])
    partners = torch.cat([torch.arange(8) + 8, torch.arange(8)])
    soft = torch.eye(2).repeat_interleave(8, 0)
    mixed, _, weight = pipmix_batch(images, soft, partners, 0.5, 16)
    cells, n_cells = patch_grid(64, 64, 16)
    for i in range(8):
        share = mixed[i, 0]
        k = torch.unique(cells[share > 0]).numel()
        lam = 1 - float(share.max())
        assert abs(float(weight[i]) - k * (1 - lam) / n_cells) < 1e-6


def test_pipmix_uses_partners_from_other_domains_and_is_deterministic():
    strategy = PipMix(3, False, alpha=0.5, prob=1.0, patch=8)
    x = torch.randn(6, 3, 32, 32)
    y, d = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1])
    torch.manual_seed(7)
    a = strategy.mix(x, y, d)
    torch.manual_seed(7)
    b = strategy.mix(x, y, d)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    mixed, targets = a
    for i in range(6):
        changed = (mixed[i] != x[i]).any(0)
        assert changed.any()
        delta = (mixed[i] - x[i])[:, changed]
        # the changed pixels move towards exactly one other image by one factor (1 - lambda)
        donors = [p for p in range(6) if p != i
                  and torch.allclose(delta / (x[p] - x[i])[:, changed], (delta[0, 0] / (x[p] - x[i])[0, changed][0])
                                     .expand_as(delta), atol=1e-4)]
        assert len(donors) == 1 and d[donors[0]] != d[i]
        assert targets[i, y[i]] >= 0.5 - 1e-6  # the anchor keeps most of its label


def test_pipmix_prob_zero_leaves_the_batch_alone_and_gradients_flow():
    x = torch.randn(4, 3, 16, 16)
    y, d = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 0, 1])
    off = PipMix(2, False, 0.4, 0.0, 8)
    mx, t = off.mix(x, y, d)
    assert mx is x and t is y
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    loss, logits = PipMix(2, False, 0.4, 1.0, 8).training_loss(model, lambda z, t: F.cross_entropy(z, t), x, y, d, 0)
    loss.backward()
    assert logits.shape == (4, 2) and model[0].weight.grad.abs().sum() > 0


def test_pipmix_multilabel_targets_are_convex_mixes_of_multi_hot():
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([0, 1, 2, 0])
    mixed, t = PipMix(3, True, 0.4, 1.0, 4).mix(torch.randn(4, 3, 16, 16), y, d)
    assert t.shape == (4, 3) and t.dtype == torch.float32
    assert ((t - y).abs() <= 0.5 + 1e-6).all()       # partner weight <= 1/2
    assert (t[y == 1] >= 0.5 - 1e-6).all() and (t[y == 0] <= 0.5 + 1e-6).all()
