"""Standard chest X-ray pixel augmentation: mild, orientation-preserving, seeded."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from core.training.transforms import PIXEL_AUGMENTED, build_train_transform, standard_transform


def _flatten(t):
    for child in getattr(t, "transforms", []):
        yield from _flatten(child)
    yield t


def test_no_flips_and_only_mild_geometry():
    t = standard_transform(64)
    parts = list(_flatten(t))
    assert not any(isinstance(p, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for p in parts)
    crop = next(p for p in parts if isinstance(p, v2.RandomResizedCrop))
    assert crop.scale[0] >= 0.7 and crop.ratio[0] >= 0.8 and crop.ratio[1] <= 1.25
    affine = next(p for p in parts if isinstance(p, v2.RandomAffine))
    assert max(abs(a) for a in affine.degrees) <= 10
    jitter = next(p for p in parts if isinstance(p, v2.ColorJitter))
    assert jitter.brightness is not None and jitter.contrast is not None and jitter.hue is None


@pytest.mark.parametrize("aug", PIXEL_AUGMENTED)
def test_augmenting_choices_get_the_transform_and_none_gets_nothing(aug):
    assert build_train_transform(aug, 32) is not None
    assert build_train_transform("none", 32) is None


def test_output_shape_dtype_and_seeded_determinism():
    t = standard_transform(48)
    img = torch.randint(0, 256, (1, 64, 64), dtype=torch.uint8)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t(img)
    assert a.shape == (1, 48, 48) and a.dtype == torch.uint8 and torch.equal(a, b)


def test_orientation_is_preserved():
    """A bright top-left quadrant stays top-left: no flips, rotations stay small."""
    img = torch.full((1, 64, 64), 40, dtype=torch.uint8)
    img[:, :32, :32] = 220
    t = standard_transform(64)
    changed = 0
    for seed in range(25):
        torch.manual_seed(seed)
        out = t(img).float()[0]
        quads = [out[:32, :32].mean(), out[:32, 32:].mean(), out[32:, :32].mean(), out[32:, 32:].mean()]
        assert int(torch.stack(quads).argmax()) == 0
        changed += not torch.equal(out, img.float()[0])
    assert changed >= 20  # it does augment
