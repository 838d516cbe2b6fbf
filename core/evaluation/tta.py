"""Test-time augmentation drawn from what training showed the model, never anything else.

Training's pixel augmentation (core.training.transforms.standard_transform) crops 80-100% of the area and
rotates up to 7 degrees; it never mirrors (a mirrored chest X-ray moves the heart). So `--tta`
averages the image with fixed views inside that range. A run trained without pixel augmentation
never saw such views: it gets no TTA, and the output says so.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torchvision.transforms.v2 import functional as F

from core.training.transforms import PIXEL_AUGMENTED

View = Callable[[torch.Tensor], torch.Tensor]
ROTATION_DEG = 5.0
CROP_SIDE = 0.9  # 81% of the area: inside RandomResizedCrop's scale=(0.8, 1.0)


def _rotate(angle: float) -> View:
    return lambda x: F.rotate(x, angle, interpolation=F.InterpolationMode.BILINEAR)


def _centre_crop(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = (max(1, round(h * CROP_SIDE)), max(1, round(w * CROP_SIDE)))
    return F.resize(F.center_crop(x, list(side)), [h, w], antialias=True)


def tta_plan(augmentation: Optional[str]) -> tuple[str, list[View]]:
    """(description for the output, extra views averaged with the image); no views when training used none."""
    if augmentation not in PIXEL_AUGMENTED:
        return (f"none (the run trained with augmentation '{augmentation}', which shows no crops or rotations; "
                "the image is scored as it is)"), []
    return (f"mean of the image, rotated +/-{ROTATION_DEG:g} degrees and a centre crop of {CROP_SIDE:.0%} side "
            f"(views inside training's '{augmentation}' augmentation; no mirroring)"), \
        [_rotate(ROTATION_DEG), _rotate(-ROTATION_DEG), _centre_crop]
