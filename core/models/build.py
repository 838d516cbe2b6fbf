"""Model names, families and construction for linear probe / full fine-tune.

A `Classifier` always exposes three stages so feature-level augmentations (XDomainMix) and the
linear-probe feature cache work for every architecture:
    feats = model.features(x)       # CNN: NCHW map, ViT: NLC tokens, Swin: NHWC map
    vec = model.pool(feats)         # pre-logits vector (timm forward_head(pre_logits=True))
    logits = model.head(vec)
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import nn

# Names, aliases and families live in core/models/names.py (no timm/torch import); re-exported here.
from core.models.names import (MODEL_ALIASES, SEED_MODELS, ModelNameError, model_family,  # noqa: E402,F401
                               resolve_model_name, timm_layer_decay_depth)


class Classifier(nn.Module):
    """timm backbone (no classifier) + our head, with the three-stage API above."""

    def __init__(self, backbone: nn.Module, num_classes: int, linear_probe: bool):
        super().__init__()
        self.backbone = backbone
        self.linear_probe = linear_probe
        # pre-logits width: MobileNetV3 & co. have a conv head wider than num_features
        dim = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        if linear_probe:
            # MAE linear-probe recipe: BatchNorm without affine, then Linear.
            self.classifier = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))
            nn.init.trunc_normal_(self.classifier[1].weight, std=0.01)
            nn.init.zeros_(self.classifier[1].bias)
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        else:
            self.classifier = nn.Linear(dim, num_classes)
        self.num_features = dim

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.linear_probe:
            self.backbone.eval()  # frozen backbone keeps BN statistics and no drop path
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(feats, pre_logits=True)

    def head(self, vec: torch.Tensor) -> torch.Tensor:
        return self.classifier(vec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear_probe:
            with torch.no_grad():
                vec = self.pool(self.features(x))
            return self.head(vec)
        return self.head(self.pool(self.features(x)))


def _extra_kwargs(timm_name: str, img_size: Optional[int]) -> dict:
    """Size arguments so transformers accept non-native resolutions."""
    family = model_family(timm_name)
    if img_size is None:
        return {}
    if family == "vit":
        return {"img_size": img_size}
    if family == "swin":
        kwargs = {"img_size": img_size}
        # Window must divide the smallest stage grid (img/32); 7 fits 224, smaller images need less.
        last = img_size // 32
        if last < 7 or (img_size // 4) % 7:
            kwargs["window_size"] = max(1, last)
        return kwargs
    return {}


def load_pretrained(backbone: nn.Module, path: str, timm_name: str = ""):
    """Load a local checkpoint (file or timm/HF folder) into the backbone; see core.models.pretrained."""
    from core.models.pretrained import load_local_weights

    return load_local_weights(backbone, path, timm_name)


def check_pretrained_path(timm_name: str, path: str, img_size: Optional[int] = None, in_chans: int = 3) -> None:
    """Load `path` into a throw-away backbone (global RNG untouched): a file that cannot be read or does
    not fit is refused before any data work, with the same one-line PretrainedError as build_model."""
    import timm

    with torch.random.fork_rng(devices=[]):
        backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_chans,
                                     **_extra_kwargs(timm_name, img_size))
        load_pretrained(backbone, path, timm_name)


def build_model(
    timm_name: str,
    num_classes: int,
    mode: str,
    img_size: Optional[int] = None,
    drop_path_rate: float = 0.0,
    pretrained_path: Optional[str] = None,
    grad_checkpointing: bool = False,
    in_chans: int = 3,
    pretrained: bool = False,
    progress=None,
) -> Classifier:
    """Create the timm backbone and wrap it.

    Weights: `pretrained_path` (a local file or timm/HF folder) wins; else `pretrained` loads timm's
    default weights through the Hugging Face cache (core.models.pretrained); else random init. The default
    is random so helpers (advisor probes, tests) never touch the network; the engine passes the
    config's `pretrained`.
    """
    import timm

    kwargs = _extra_kwargs(timm_name, img_size)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if pretrained and not pretrained_path:
        from core.models.pretrained import create_pretrained_backbone

        backbone = create_pretrained_backbone(timm_name, in_chans=in_chans, progress=progress, **kwargs)
    else:
        backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    if pretrained_path:
        load_pretrained(backbone, pretrained_path, timm_name)
    if grad_checkpointing and hasattr(backbone, "set_grad_checkpointing"):
        backbone.set_grad_checkpointing(True)
    return Classifier(backbone, num_classes, linear_probe=(mode == "linear_probe"))


def supports_grad_checkpointing(model: Classifier) -> bool:
    return hasattr(model.backbone, "set_grad_checkpointing")


def param_groups(model: Classifier, weight_decay: float, layer_decay: Optional[float]) -> list[dict]:
    """Optimizer groups: no decay on norms/biases/tokens; per-layer `lr_scale` when layer_decay is set.

    The engine multiplies each group's LR by its `lr_scale` on every step (torch schedulers would not).
    """
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    if model.linear_probe:
        return [{"params": [p for p in model.classifier.parameters() if p.requires_grad],
                 "weight_decay": weight_decay, "lr_scale": 1.0, "name": "head"}]
    no_decay = set(getattr(model.backbone, "no_weight_decay", lambda: set())())
    if layer_decay is not None and layer_decay < 1.0:
        groups = param_groups_layer_decay(model.backbone, weight_decay=weight_decay,
                                          no_weight_decay_list=no_decay, layer_decay=layer_decay)
    else:
        groups = param_groups_weight_decay(model.backbone, weight_decay=weight_decay, no_weight_decay_list=no_decay)
    for g in groups:
        g.setdefault("lr_scale", 1.0)
    head_decay = [p for n, p in model.classifier.named_parameters() if p.ndim > 1]
    head_no_decay = [p for n, p in model.classifier.named_parameters() if p.ndim <= 1]
    groups.append({"params": head_decay, "weight_decay": weight_decay, "lr_scale": 1.0, "name": "head"})
    if head_no_decay:
        groups.append({"params": head_no_decay, "weight_decay": 0.0, "lr_scale": 1.0, "name": "head_no_decay"})
    return [g for g in groups if g["params"]]


def build_optimizer(model: Classifier, mode: str, lr: float, weight_decay: float,
                    layer_decay: Optional[float]) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) for linear probe, AdamW for fine-tune, as the tips say."""
    groups = param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if mode == "linear_probe":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
