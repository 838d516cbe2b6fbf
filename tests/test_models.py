"""Seed model names, both modes, linear-probe freezing and layer-wise LR decay."""
from __future__ import annotations

import pytest
import torch

from core.models.build import (
    SEED_MODELS,
    build_model,
    build_optimizer,
    model_family,
    param_groups,
    resolve_model_name,
)
from core.training.schedule import apply_lr, lr_factor

SIZES = {"swin": 64}  # swin needs room for its 4 stages; others run at 32 px


def tiny_batch(size, n=2):
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size), torch.tensor([0, 1][:n])


@pytest.mark.parametrize("seed_name", SEED_MODELS)
@pytest.mark.parametrize("mode", ["linear_probe", "full_finetune"])
def test_seed_models_build_and_step(seed_name, mode):
    timm_name = resolve_model_name(seed_name)
    size = SIZES.get(model_family(timm_name), 32)
    model = build_model(timm_name, 3, mode, img_size=size)
    opt = build_optimizer(model, mode, lr=1e-3, weight_decay=0.0 if mode == "linear_probe" else 0.05,
                          layer_decay=0.65 if model_family(timm_name) in ("vit", "swin") and mode == "full_finetune" else None)
    x, y = tiny_batch(size)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    feats = model.features(x)
    assert model.head(model.pool(feats)).shape == (2, 3)


def test_linear_probe_leaves_backbone_unchanged():
    model = build_model("resnet18", 3, "linear_probe", img_size=32)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.classifier[1].weight.clone()
    opt = build_optimizer(model, "linear_probe", lr=0.1, weight_decay=0.0, layer_decay=None)
    model.train()
    assert not model.backbone.training, "frozen backbone must stay in eval mode (BN stats fixed)"
    for _ in range(3):
        x, y = tiny_batch(32)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "backbone weights or BN buffers changed"
    assert not torch.equal(head_before, model.classifier[1].weight), "head must train"
    assert isinstance(model.classifier[0], torch.nn.BatchNorm1d) and not model.classifier[0].affine
    assert isinstance(opt, torch.optim.SGD)


def test_layer_decay_groups_get_scaled_lr_at_step():
    model = build_model("vit_tiny_patch16_224", 2, "full_finetune", img_size=32)
    opt = build_optimizer(model, "full_finetune", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    assert isinstance(opt, torch.optim.AdamW)
    factor = lr_factor(step=10, total_steps=100, warmup_steps=5, min_ratio=0.0)
    apply_lr(opt, 1e-3, factor)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    n_layers = len(model.backbone.blocks)  # embeddings at decay**n_blocks, final norm/head at scale 1
    assert scales[-1] == 1.0 and min(scales) == pytest.approx(0.5 ** n_layers)
    # the depth --print-config and the layer-decay tip use is the one the optimizer groups get
    from core.models.names import timm_layer_decay_depth as layer_decay_depth
    assert min(scales) == pytest.approx(0.5 ** layer_decay_depth("vit_tiny_patch16_224"))
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(1e-3 * factor * group["lr_scale"])
    # The embedding group (earliest layer) gets the smallest LR.
    pos_embed = model.backbone.pos_embed
    group = next(g for g in opt.param_groups if any(p is pos_embed for p in g["params"]))
    assert group["lr_scale"] == pytest.approx(min(scales)) and group["weight_decay"] == 0.0


def test_no_weight_decay_on_norms_biases_tokens():
    model = build_model("vit_tiny_patch16_224", 2, "full_finetune", img_size=32)
    groups = param_groups(model, weight_decay=0.05, layer_decay=None)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    named = dict(model.named_parameters())
    for name, p in named.items():
        if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed")):
            assert id(p) in no_decay, name
        else:
            assert id(p) not in no_decay, name


def test_pretrained_weights_load_from_local_file_only(tmp_path):
    from safetensors.torch import save_file

    from core.models.pretrained import PretrainedError

    source = build_model("resnet18", 2, "full_finetune", img_size=32)
    state = {f"module.{k}": v for k, v in source.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet head is ignored
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        model = build_model("resnet18", 3, "full_finetune", img_size=32, pretrained_path=str(tmp_path / name))
        target = model.backbone.state_dict()
        assert all(torch.equal(v, target[k]) for k, v in source.backbone.state_dict().items())
    with pytest.raises(PretrainedError, match="pretrained_path: file not found"):
        build_model("resnet18", 3, "full_finetune", pretrained_path=str(tmp_path / "missing.pth"))


def test_grad_checkpointing_is_switched_on():
    model = build_model("vit_tiny_patch16_224", 2, "full_finetune", img_size=32, grad_checkpointing=True)
    assert model.backbone.grad_checkpointing is True
    x, y = tiny_batch(32)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None
