"""Grad-CAM heatmaps over the X-ray (package `grad-cam`, optional extra `explain`).

The target layer is the last spatial feature map: the last stage of a CNN/ConvNeXt, the first
norm of the last block of a ViT/DeiT (tokens reshaped to the patch grid, prefix tokens dropped)
or of a Swin (NHWC reshaped to NCHW).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.data.decode import decode_gray, load_resized, resize_square
from core.evaluation.run_model import RunModel, RunModelError, to_probabilities

EXPLAIN_HINT = "uv sync --extra explain (or pip install 'medcls[explain]')"
OVERLAY_MAX_SIDE = 512


class _Logits(nn.Module):
    """The classifier without the linear probe's no_grad, so gradients reach the backbone maps."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        return m.head(m.pool(m.features(x)))


def target_layer(rm: RunModel) -> tuple[nn.Module, Optional[Callable]]:
    """(layer to hook, reshape transform to NCHW or None) for the run's architecture."""
    backbone = rm.model.backbone
    unknown = _unknown_token_layout(backbone)
    if unknown:
        raise RunModelError(f"explain: Grad-CAM does not know the token layout of '{rm.config.model}' ({unknown}); "
                            "it supports CNNs, ConvNeXt, ViT/DeiT and Swin")
    if rm.family == "vit":
        prefix = int(getattr(backbone, "num_prefix_tokens", 1))
        grid = tuple(backbone.patch_embed.grid_size)

        def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
            t = t[:, prefix:, :]
            return t.reshape(t.shape[0], grid[0], grid[1], t.shape[2]).permute(0, 3, 1, 2)

        return backbone.blocks[-1].norm1, tokens_to_map
    if rm.family == "swin":
        return backbone.layers[-1].blocks[-1].norm1, lambda t: t.permute(0, 3, 1, 2)
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise RunModelError(f"explain: no known Grad-CAM layer for model '{rm.config.model}'")
    return backbone.get_submodule(info[-1]["module"]), None


def _unknown_token_layout(backbone: nn.Module) -> Optional[str]:
    """Why a transformer's last block cannot be read as a patch grid here (None: a known layout).
    CaiT (class-attention blocks after the patch blocks), XCiT (cross-covariance blocks + class
    attention) and any non-ViT token model would give a heatmap of the wrong tokens, or a traceback."""
    name = type(backbone).__name__
    if name in ("Cait", "XCiT") or hasattr(backbone, "blocks_token_only") or hasattr(backbone, "cls_attn_blocks"):
        return f"{name}: class-attention blocks after the patch tokens"
    blocks = getattr(backbone, "blocks", None)
    if blocks is not None and getattr(backbone, "patch_embed", None) is not None:
        grid = getattr(backbone.patch_embed, "grid_size", None)
        if grid is None or not hasattr(blocks[-1], "norm1"):
            return f"{name}: no patch grid or per-block norm"
    return None


def _grad_cam_class():
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise RunModelError(f"explain needs grad-cam, an optional extra: {EXPLAIN_HINT}") from None
    return GradCAM, ClassifierOutputTarget


def cam_for(rm: RunModel, image: np.ndarray, class_index: Optional[int] = None) -> tuple[np.ndarray, int, float]:
    """(heatmap in [0, 1] at model size, class explained, its probability) for one uint8 HxW image
    (pass load_resized's model-size image: then the model sees exactly predict's pixels)."""
    GradCAM, Target = _grad_cam_class()
    layer, reshape = target_layer(rm)
    # requires_grad: a linear probe's frozen backbone would otherwise leave no gradient to hook
    x = rm.normalize(torch.from_numpy(resize_square(image, rm.img_size))[None, None]).requires_grad_(True)
    wrapped = _Logits(rm.model).eval()
    with torch.no_grad():
        probs = to_probabilities(wrapped(x), rm.multi_label)[0]
    index = int(probs.argmax()) if class_index is None else int(class_index)
    with GradCAM(model=wrapped, target_layers=[layer], reshape_transform=reshape) as cam:
        heat = cam(input_tensor=x, targets=[Target(index)])[0]
    return np.nan_to_num(heat.astype(np.float32)), index, float(probs[index])


COARSE_GRID = 7
"""A Grad-CAM map is the target layer's grid upsampled: below 7x7 cells (ResNet's last stage at 64 px is
2x2) it cannot point at a finding, only at a quarter of the image."""


def cam_grid(rm: RunModel) -> tuple[int, int]:
    """(rows, cols) of the map Grad-CAM reads: the target layer's output at the run's image size."""
    layer, reshape = target_layer(rm)
    seen: dict = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    try:
        with torch.no_grad():
            rm.model(rm.normalize(torch.zeros(1, 1, rm.img_size, rm.img_size, dtype=torch.uint8)))
    finally:
        handle.remove()
    out = seen["out"][0] if isinstance(seen["out"], (tuple, list)) else seen["out"]
    out = reshape(out) if reshape else out
    return int(out.shape[-2]), int(out.shape[-1])


def coarse_note(grid: tuple[int, int]) -> Optional[str]:
    """What to tell the user when the map is too coarse to localise anything, else None."""
    if min(grid) >= COARSE_GRID:
        return None
    return (f"Grad-CAM grid {grid[0]}x{grid[1]} cells: too coarse to localise a finding (under "
            f"{COARSE_GRID}x{COARSE_GRID}; train at a larger --img_size)")


def _colormap(values: np.ndarray) -> np.ndarray:
    """RGB uint8 of `values` in [0, 1] in the overlay's own colour map (grad-cam's JET)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    ramp = np.clip(values.astype(np.float32), 0.0, 1.0)[None, :]
    return show_cam_on_image(np.zeros((*ramp.shape, 3), np.float32), ramp, use_rgb=True, image_weight=0.0)[0]


def _legend(picture: np.ndarray, label: str, note: Optional[str]) -> np.ndarray:
    """The overlay with a band below it: what was explained (class, probability), the colour scale from
    low to high relevance, and the coarse-grid note. The picture keeps its pixels and size."""
    from PIL import ImageDraw, ImageFont

    h, w, _ = picture.shape
    width = max(w, 260)
    fs = max(11, min(20, width // 32))
    font = ImageFont.load_default(size=fs)
    line = fs + 6
    lines = [label, "", *([note] if note else [])]
    band = Image.new("RGB", (width, line * len(lines) + 6), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    draw.text((4, 3), label, fill=(255, 255, 255), font=font)
    y = 3 + line
    low_w = int(draw.textlength("low ", font=font))
    high = " high relevance"
    bar_w = max(20, width - 8 - low_w - int(draw.textlength(high, font=font)))
    draw.text((4, y), "low ", fill=(255, 255, 255), font=font)
    bar = _colormap(np.linspace(0.0, 1.0, bar_w))
    band.paste(Image.fromarray(np.repeat(bar[None], fs, axis=0)), (4 + low_w, y + 2))
    draw.text((4 + low_w + bar_w, y), high, fill=(255, 255, 255), font=font)
    if note:
        short = note.split(":")[0] + ": too coarse to localise"
        draw.text((4, y + line), short, fill=(255, 220, 0), font=font)
    canvas = Image.new("RGB", (width, h + band.height), (0, 0, 0))
    canvas.paste(Image.fromarray(picture), (0, 0))
    canvas.paste(band, (0, h))
    return np.asarray(canvas)


def overlay(image: np.ndarray, heat: np.ndarray, label: Optional[str] = None,
            grid: Optional[tuple[int, int]] = None) -> np.ndarray:
    """RGB uint8 overlay of the heatmap on the gray X-ray at (up to OVERLAY_MAX_SIDE) image resolution;
    with `label` ('Effusion p=0.534'), a band below it names it, shows the colour scale and, when
    `grid` is coarser than COARSE_GRID, says the map cannot localise."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    h, w = image.shape
    scale = min(1.0, OVERLAY_MAX_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    gray = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
    heat_big = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    rgb = np.repeat(gray[..., None], 3, axis=2)
    picture = show_cam_on_image(rgb, np.clip(heat_big, 0.0, 1.0), use_rgb=True, image_weight=0.6)
    if label is None:
        return picture
    return _legend(picture, label, coarse_note(grid) if grid is not None else None)


def class_index(rm: RunModel, name: Optional[str]) -> Optional[int]:
    if name is None:
        return None
    lowered = {c.lower(): i for i, c in enumerate(rm.classes)}
    if name.lower() not in lowered:
        raise RunModelError(f"class: '{name}' is not one of {', '.join(rm.classes)}")
    return lowered[name.lower()]


def explain_file(rm: RunModel, path: Path, out: Path, class_name: Optional[str] = None) -> dict:
    """Decode (PNG/JPEG/DICOM), Grad-CAM, write the overlay PNG; returns what was explained."""
    index = class_index(rm, class_name)
    target_layer(rm)  # an unknown layout is refused before any decoding
    # the model's input is decoded as the cache and predict decode it (JPEG draft included); the
    # full-resolution image is only the overlay's background
    heat, index, prob = cam_for(rm, load_resized(path, rm.img_size), index)
    image = decode_gray(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = cam_grid(rm)
    Image.fromarray(overlay(image, heat, f"{rm.classes[index]} p={prob:.3f}", grid)).save(out)
    return {"image": str(path), "overlay": str(out), "class": rm.classes[index], "probability": prob,
            "grid": list(grid), "note": coarse_note(grid)}
