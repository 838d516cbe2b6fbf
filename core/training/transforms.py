"""Per-image pixel augmentation for chest X-rays, run in the data loader on uint8 tensors.

Chest X-rays have a meaningful orientation: mild crops, small rotations and contrast changes
are safe; vertical flips are not (and horizontal flips move the heart, so they are off too).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torchvision.transforms import v2

Transform = Callable[[torch.Tensor], torch.Tensor]
PIXEL_AUGMENTED = ("standard", "mixup", "xdomainmix", "pipmix", "xdomainmix+pipmix")


def standard_transform(img_size: int) -> Transform:
    return v2.Compose([
        v2.RandomResizedCrop(img_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomAffine(degrees=7, translate=(0.03, 0.03)),
        v2.ColorJitter(brightness=0.15, contrast=0.15),
    ])


def build_train_transform(augmentation: Optional[str], img_size: int) -> Optional[Transform]:
    """None when the training images are used as they are (then linear-probe features can be cached)."""
    if augmentation in PIXEL_AUGMENTED:
        return standard_transform(img_size)
    return None
