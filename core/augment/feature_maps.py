"""Where the channels are in a backbone's feature output, so channel-wise feature mixing works
for every timm family: CNN / ConvNeXt maps are NCHW, ViT / DeiT tokens NLC (cls token included),
Swin maps NHWC, and an already pooled vector is NC.
"""
from __future__ import annotations

import torch
from torch import nn

SPATIAL_DIMS = {"NCHW": (2, 3), "NHWC": (1, 2), "NLC": (1,), "NC": ()}


def feature_layout(feats: torch.Tensor, backbone: nn.Module | None = None) -> str:
    """Layout of `feats`; timm's `output_fmt` decides for 4-D maps, the channel count checks it."""
    if feats.ndim == 2:
        return "NC"
    if feats.ndim == 3:
        return "NLC"
    if feats.ndim != 4:
        raise ValueError(f"feature maps must be 2-D, 3-D or 4-D, got shape {tuple(feats.shape)}")
    hint = str(getattr(backbone, "output_fmt", "") or "").upper()
    if hint in ("NHWC", "NCHW"):
        return hint
    channels = getattr(backbone, "num_features", None)
    if channels is not None and feats.shape[1] != channels and feats.shape[-1] == channels:
        return "NHWC"
    return "NCHW"


def channel_axis(layout: str) -> int:
    return 1 if layout == "NCHW" else -1


def channel_mean(x: torch.Tensor, layout: str) -> torch.Tensor:
    """(N, C) float32 mean over the spatial / token positions."""
    dims = SPATIAL_DIMS[layout]
    x = x.float()
    return x.mean(dim=dims) if dims else x


def per_channel(values: torch.Tensor, layout: str) -> torch.Tensor:
    """Reshape (N, C) per-channel values so they broadcast against a feature tensor of `layout`."""
    if layout == "NCHW":
        return values[:, :, None, None]
    if layout == "NHWC":
        return values[:, None, None, :]
    if layout == "NLC":
        return values[:, None, :]
    return values


def per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape (N,) per-sample values to broadcast against an ndim-D tensor."""
    return values.view(-1, *([1] * (ndim - 1)))
