"""Merge the config layers and fill what is left from the tips, remembering why.

Order (DESIGN.md): default < tip < preset < config file < flag. Tips only fill keys no layer
set, which is the same as ranking them just above the built-in defaults.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import ValidationError

from core.config import tips
from core.config import (
    ConfigError,
    ResolvedConfig,
    TrainConfig,
    _format_validation_error,
    flatten_yaml_config,
    load_yaml_file,
    validate_layer,
)
from core.models.names import ModelNameError, model_family, resolve_model_name

# Datasets whose task is fixed single-label: --multi_label makes no sense for them.
SINGLE_LABEL_DATASETS = ("covidx", "vinbigdata", "folder")


def _layer_values(flat: dict[str, Any], mode: str) -> dict[str, Any]:
    """A layer's own keys plus its section for the chosen mode (`full_finetune: {...}`)."""
    values = {k: v for k, v in flat.items() if k != "__sections__"}
    values.update(flat.get("__sections__", {}).get(mode, {}))
    return values


def resolve_config(
    flags: Optional[dict[str, Any]] = None,
    preset: Optional[str] = None,
    config_file: Optional[str] = None,
    vram_gib: Optional[float] | str = "detect",
    base: Optional[dict[str, Any]] = None,
) -> ResolvedConfig:
    """Build a validated TrainConfig from preset, config file and flags (None flags = not given).

    `base` is an already-resolved config (e.g. a run's config.yaml for --retrain): its values
    count as "config file" values.
    """
    from core.config.presets import find_preset

    layers: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    if base:
        layers.append(("config file", validate_layer(dict(base), "run config")))
    if preset:
        info = find_preset(preset)
        pv = dict(info.values)
        validate_layer({k: v for k, v in pv.items() if k != "__sections__"}, f"preset '{info.name}' ({info.path})")
        layers.append(("preset", pv))
        if info.notes:
            notes.append(f"preset {info.name}: {info.notes}")
    if config_file:
        flat, _meta = flatten_yaml_config(load_yaml_file(config_file), config_file)
        validate_layer({k: v for k, v in flat.items() if k != "__sections__"}, config_file)
        layers.append(("config file", flat))
    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    validate_layer(flag_values, "command line")
    layers.append(("flag", flag_values))

    mode = "full_finetune"
    for _, flat in layers:
        mode = flat.get("mode", mode)
    mode = str(mode).strip().lower().replace("-", "_")

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, flat in layers:
        for key, value in _layer_values(flat, mode).items():
            merged[key] = value
            sources[key] = source

    try:
        partial = TrainConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    try:
        timm_name = resolve_model_name(partial.model)
    except ModelNameError as err:
        raise ConfigError(str(err)) from None

    family = model_family(timm_name)
    reasons: dict[str, str] = {}
    warnings: list[str] = []
    _check_combinations(partial, sources, family, timm_name, warnings)

    filled = dict(merged)
    if family not in tips.LAYER_DECAY_FAMILIES and filled.get("layer_decay") is not None:
        filled["layer_decay"] = None  # config.yaml records what runs: no layer-wise decay
        reasons["layer_decay"] = "ignored: layer-wise decay is for transformers/ConvNeXt, not CNNs"

    def fill(key: str, tip: Optional[tips.Tip] | Callable[[], Optional[tips.Tip]]) -> None:
        if filled.get(key) is not None:
            return
        tip_value = tip() if callable(tip) else tip
        if tip_value is None:
            return
        filled[key] = tip_value.value
        sources[key] = "tip"
        reasons[key] = tip_value.reason

    ds = tips.dataset_tip(partial.dataset)
    ds_title = ds.get("title", partial.dataset)
    fill("multi_label", (lambda: tips.Tip(ds["multi_label"], f"{ds_title}: natural task"))
         if "multi_label" in ds else None)
    multi_label = bool(filled.get("multi_label")) or (partial.dataset == "synthetic" and partial.synthetic_task == "multilabel")
    fill("epochs", tips.Tip(ds.get("epochs", 100), f"{ds_title}: {ds.get('epochs', 100)} epochs"))
    fill("img_size", tips.Tip(ds.get("img_size", 224), f"{ds_title}: {ds.get('img_size', 224)} px"))
    fill("lr", tips.lr_tip(family, mode))
    fill("weight_decay", tips.weight_decay_tip(family, mode))
    fill("layer_decay", lambda: tips.layer_decay_tip(family, mode, timm_name))
    fill("drop_path_rate", tips.drop_path_tip(timm_name, mode))
    gib = _vram(vram_gib, partial.device)
    fill("batch_size", lambda: _batch_tip(gib, mode, timm_name, partial.dataset, ds))
    fill("augmentation", tips.augmentation_tip(partial.scenario, mode))
    fill("warmup_epochs", tips.warmup_tip(int(filled["epochs"])))
    if "early_stopping" in ds:
        fill("early_stopping", tips.Tip(ds["early_stopping"], f"{ds_title}: consider early stopping (patience {ds['early_stopping']})"))
    fill("monitor", tips.Tip("val_auroc", "AUROC is threshold-free and robust to class imbalance"))
    if filled.get("loss") in (None, "auto"):
        t = tips.loss_tip(partial.dataset, multi_label)
        filled["loss"] = t.value
        sources["loss"] = "tip"
        reasons["loss"] = t.reason
    if filled.get("monitor_mode") is None:
        filled["monitor_mode"] = "min" if filled["monitor"] == "val_loss" else "max"
        sources["monitor_mode"] = "default"
        reasons["monitor_mode"] = f"{filled['monitor']} is better when {'lower' if filled['monitor'] == 'val_loss' else 'higher'}"

    try:
        config = TrainConfig.model_validate(filled)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    _check_resolved(config, multi_label, warnings)
    _explain_weights(config, timm_name, family, sources, reasons, warnings)
    _check_registered(config)
    return ResolvedConfig(config=config, sources=sources, reasons=reasons, notes=notes, warnings=warnings)


def _vram(vram_gib: Optional[float] | str, device: str) -> Optional[float]:
    if vram_gib != "detect":
        return vram_gib  # type: ignore[return-value]
    from core.hardware.host import gpu_total_memory_gib, nominal_gib

    total = gpu_total_memory_gib(device)
    return None if total is None else nominal_gib(total)  # same card class as the advisor's


def _batch_tip(gib, mode, timm_name, dataset, ds) -> tips.Tip:
    tip = tips.batch_tip(gib, mode, timm_name, dataset)
    if "batch_size" in ds and mode == "full_finetune" and gib is not None:
        low, high, _ = tips.batch_range_for_vram(gib, mode)
        value = min(high, ds["batch_size"])
        capped = " (capped by GPU memory)" if value < ds["batch_size"] else ""
        return tips.Tip(value, f"{ds.get('title', dataset)}: batch {ds['batch_size']}{capped}; {tip.reason}")
    return tip


def _check_combinations(cfg: TrainConfig, sources: dict[str, str], family: str, timm_name: str,
                        warnings: list[str]) -> None:
    """Impossible combinations fail before training, naming the key."""
    if cfg.dataset not in dataset_names():
        from core.models.names import did_you_mean

        raise ConfigError(f"dataset: unknown dataset '{cfg.dataset}'.{did_you_mean(cfg.dataset, dataset_names(), cutoff=0.6)} "
                          f"Allowed: {', '.join(dataset_names())}")
    if cfg.layer_decay is not None and family not in tips.LAYER_DECAY_FAMILIES:
        warnings.append(
            f"layer_decay {cfg.layer_decay:g} is ignored: '{cfg.model}' is a CNN ({timm_name}) and layer-wise "
            f"decay applies to transformers/ConvNeXt ({', '.join(tips.LAYER_DECAY_FAMILIES)}); every layer "
            "trains at the full LR")
    elif cfg.layer_decay is not None and cfg.mode == "linear_probe":
        warnings.append("layer_decay is ignored in linear_probe mode (only the head trains)")
    if cfg.multi_label and cfg.dataset in SINGLE_LABEL_DATASETS:
        raise ConfigError(
            f"multi_label: '{cfg.dataset}' is a single-label dataset; --multi_label is allowed for nih, csv and synthetic"
        )
    if cfg.multi_label is False and cfg.dataset == "nih":
        raise ConfigError("multi_label: NIH ChestX-ray14 is multi-label (14 findings); drop --no_multi_label")
    # Where the data is (data_dir, csv) is checked before training by core.data.location_check, not here:
    # showing and resolving a preset must not need the data on disk.
    if cfg.pretrained_path and not Path(cfg.pretrained_path).expanduser().exists():
        raise ConfigError(f"pretrained_path: file not found: {cfg.pretrained_path} (a .pth/.bin/.safetensors file "
                          "or a timm/Hugging Face folder holding model.safetensors or pytorch_model.bin)")
    if cfg.grad_checkpointing and cfg.mode == "linear_probe":
        warnings.append("grad_checkpointing has no effect in linear_probe mode (the backbone runs without gradients)")


def _check_resolved(cfg: TrainConfig, multi_label: bool, warnings: list[str]) -> None:
    if cfg.monitor == "val_acc" and multi_label:
        raise ConfigError("monitor: val_acc is single-label only; use val_auroc or val_loss for multi-label")
    if cfg.loss == "ce" and multi_label:
        raise ConfigError("loss: ce is single-label; multi-label allows bce, focal or asl")
    if cfg.class_weights and cfg.loss != "ce":
        raise ConfigError(f"class_weights: applies to loss ce only (loss is {cfg.loss}: bce already weights each "
                          "class's positives by pos_weight; focal and asl balance with focal_alpha / asl_gamma_*)")
    if cfg.augmentation in ("none",) and cfg.mixup_alpha > 0:
        warnings.append("mixup_alpha > 0 with augmentation none: plain input mixup is still applied")


def _explain_weights(cfg: TrainConfig, timm_name: str, family: str, sources: dict[str, str],
                     reasons: dict[str, str], warnings: list[str]) -> None:
    """Say where the starting weights come from; warn when the tips' settings assume weights it lacks."""
    if cfg.pretrained_path:
        reasons["pretrained"] = f"weights from pretrained_path {cfg.pretrained_path} (not the hub)"
        if not cfg.pretrained:
            warnings.append(f"pretrained is false but pretrained_path is set: weights load from {cfg.pretrained_path}")
        return
    if cfg.pretrained:
        where = "from the Hugging Face hub cache (HF_HOME), downloaded once"
        if "timm" in sys.modules:  # name the exact weights only when timm is loaded anyway (start-up stays light)
            from core.models.pretrained import hub_weights

            weights = hub_weights(timm_name)
            where = weights.describe() if weights else "none: timm has no weights for this model"
        reasons["pretrained"] = f"timm ImageNet weights, {where}; the tips assume a pretrained backbone"
        return
    reasons["pretrained"] = "random init on purpose; the spec's LR tips are for pretrained backbones"
    scratch = tips.scratch_tip(family, cfg.mode, cfg.lr)
    if scratch:
        warnings.append(scratch)


def dataset_names() -> list[str]:
    """Every `--dataset` name (core/data), read from the sources: checking a config needs no torch/numpy."""
    return _registered_names("data", "register_dataset", "core.data", "DATASETS")


def strategy_names() -> list[str]:
    """Batch-strategy names (core/augment), read from the sources."""
    return _registered_names("augment", "register_strategy", "core.augment", "STRATEGIES")


def loss_names() -> list[str]:
    """Loss names (core/training/losses.py), read from the source."""
    return _registered_names("training/losses.py", "register_loss", "core.training.losses", "LOSSES")


def _registered_names(where: str, decorator: str, module: str, registry: str) -> list[str]:
    """Names declared with `@decorator("name")` under core/<where>, plus any registered at run time
    when the module is already imported (tests/test_startup.py checks both agree)."""
    import sys

    from core.config.registry import declared_names

    path = Path(__file__).parents[1] / where
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    loaded = sys.modules.get(module)
    extra = set(getattr(loaded, registry).names()) if loaded is not None and hasattr(loaded, registry) else set()
    return sorted(declared_names(files, decorator) | extra)


def _check_registered(cfg: TrainConfig) -> None:
    """Names that select registered code (augmentation, loss, dataset) must exist."""

    aug = cfg.augmentation or "standard"
    if aug not in ("none", "standard") and aug not in strategy_names():
        raise ConfigError(f"augmentation: '{aug}' is not available in this build. Allowed: none, standard, "
                          f"{', '.join(n for n in strategy_names() if n != 'erm')}")
    if cfg.loss not in loss_names():
        raise ConfigError(f"loss: '{cfg.loss}' is not available. Allowed: auto, {', '.join(loss_names())}")


def format_config_table(resolved: ResolvedConfig, world_size: int = 1) -> list[str]:
    """Plain text lines: key = value  [source] reason, then the batch over all processes. Used by
    --print-config (world_size: the processes of `--gpus N` or of the torchrun job)."""
    rows = resolved.describe()
    width = max(len(k) for k, *_ in rows)
    lines = []
    for key, value, source, reason in rows:
        line = f"{key:<{width}} = {value!r:<24} [{source}]"
        if reason:
            line += f"  {reason}"
        lines.append(line)
    scale = smallest_lr_scale_line(resolved.config)
    if scale:
        lines.append(scale)
    lines += batch_lines(resolved.config, world_size)
    for w in resolved.warnings:
        lines.append(f"warning: {w}")
    return lines


def smallest_lr_scale_line(cfg: TrainConfig) -> Optional[str]:
    """What layer_decay means for this model: the earliest layers' share of the LR."""
    if cfg.mode != "full_finetune" or not cfg.layer_decay or cfg.layer_decay >= 1.0:
        return None
    from core.models.names import layer_decay_depth
    timm_name = resolve_model_name(cfg.model)
    depth = layer_decay_depth(timm_name)
    if depth is None:
        return None
    scale = cfg.layer_decay ** depth
    return (f"layer_decay {cfg.layer_decay:g} on {timm_name}: {depth + 1} LR levels, the earliest layers train at "
            f"{scale:.2g} x the LR ({scale * (cfg.lr or 0):.2g})")


def batch_lines(cfg: TrainConfig, world_size: int) -> list[str]:
    """Per-rank and global batch, and the LR rule that goes with them.

    batch_size is per process (per GPU): the tips' batch-by-VRAM table and `medcls advise` size it for
    one card. The spec ties the LR to model family and mode, not to batch size, so the LR is used as
    is for the global batch; the linear-scaling rule (Goyal et al. 2017) is named for users who
    change the global batch a lot, never applied silently."""
    per_rank, accum = cfg.batch_size, cfg.grad_accum_steps
    if world_size <= 1:
        total = f"{per_rank * accum}" if isinstance(per_rank, int) else f"{per_rank} x {accum}"
        return [f"batch: {per_rank} x {accum} accumulation = effective batch {total} (one process; "
                "--gpus N / torchrun multiply it by N)"]
    if not isinstance(per_rank, int):
        return [f"batch: {per_rank} per GPU (measured on each), x {world_size} processes x {accum} accumulation",
                f"lr rule: the tips' LR {cfg.lr:g} is used as is for the global batch (not rescaled)"]
    global_batch = per_rank * world_size * accum
    return [f"batch: {per_rank} per GPU x {world_size} processes x {accum} accumulation = global batch {global_batch}",
            f"lr rule: the tips' LR {cfg.lr:g} is used as is for the global batch {global_batch} (the spec sets the LR by "
            f"model and mode, not by batch); linear scaling would give {cfg.lr * world_size:g} (--lr to choose it)"]
