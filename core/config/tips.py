"""The tables of the training tips as data, and the small functions that apply them.

Every number the app suggests comes from here, with the section of docs/TIPS.md (generated from
this module by core/config/tips_doc.py) that it encodes, so the TUI's explanations, `--print-config`, the
presets and the document all say the same thing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

SPEC = "docs/TIPS.md"
"""Where the provenance lines point: the document generated from these tables (core/config/tips_doc.py)."""

# --- General guidelines: Linear Probe vs Full Fine-tune -------------------------------------
MODE_TABLE = {
    "linear_probe": {
        "when": "Quick evaluation, limited data, baseline",
        "typical_lr": "0.1 (SGD)",
        "optimizer": "sgd",
    },
    "full_finetune": {
        "when": "Best performance, enough data",
        "typical_lr": "1e-4 to 5e-5 (AdamW)",
        "optimizer": "adamw",
    },
}

# --- Learning Rate: By Model Type -----------------------------------------------------------
# family -> (linear probe LR, fine-tune LR, fine-tune LR range as written in the spec)
LR_TABLE = {
    "cnn": {"label": "CNN (ResNet)", "linear_probe": 0.1, "full_finetune": 1e-3, "range": "1e-3"},
    "vit": {"label": "ViT / DeiT", "linear_probe": 0.1, "full_finetune": 5e-5, "range": "5e-5"},
    "swin": {"label": "Swin", "linear_probe": 0.1, "full_finetune": 5e-5, "range": "3e-5 to 5e-5"},
    "convnext": {"label": "ConvNeXt", "linear_probe": 0.1, "full_finetune": 5e-5, "range": "5e-5"},
}

# --- Layer-wise LR decay (transformers) -----------------------------------------------------
LAYER_DECAY_TIP = 0.65
"""The tips' value, written for 12-block ViTs (ViT-S/B, DeiT-S): the earliest layers get 0.65^12."""
LAYER_DECAY_REFERENCE_DEPTH = 12
LAYER_DECAY_FAMILIES = ("vit", "swin", "convnext")

# --- Batch Size by GPU memory ---------------------------------------------------------------
# (min GiB, batch low, batch high); the first row whose min <= VRAM applies (rows sorted desc).
BATCH_BY_VRAM = [
    (24.0, 64, 128),
    (16.0, 32, 64),
    (8.0, 16, 32),
]
LINEAR_PROBE_MIN_BATCH = 256  # "For linear probe, use larger batch sizes (256+)."
CPU_BATCH = 32  # no GPU: the smallest sensible mini-batch for CPU runs

# --- Regularization -------------------------------------------------------------------------
DROP_PATH_BY_SIZE = {"small": 0.1, "medium": 0.2, "large": 0.3}
WEIGHT_DECAY_TABLE = {
    "linear_probe": 0.0,
    "full_finetune_cnn": 1e-4,
    "full_finetune_transformer": 0.05,
}
LABEL_SMOOTHING_EXAMPLE = 0.1

# --- Data augmentation: when to use XDomainMix / PipMix ------------------------------------
AUGMENTATION_BY_SCENARIO = {
    "single_domain": ("standard", "Single-domain training -> standard augmentation"),
    "multi_domain": ("xdomainmix", "Multi-domain training -> XDomainMix"),
    "domain_generalization": ("xdomainmix+pipmix", "Domain generalization -> XDomainMix + PipMix"),
}
MIXUP_EXAMPLE = {"mixup_alpha": 0.2, "mixup_prob": 0.5}

# --- Dataset-specific tips ------------------------------------------------------------------
DATASET_TIPS = {
    "nih": {
        "title": "NIH ChestX-ray14 (Multi-label)",
        "epochs": 100, "batch_size": 64, "multi_label": True, "img_size": 224,
        "loss": "bce",
        "tips": ["14 classes, highly imbalanced", "Use --multi_label flag",
                 "Consider class weights or focal loss"],
    },
    "covidx": {
        "title": "COVIDx (Multi-class)",
        "epochs": 50, "batch_size": 32, "multi_label": False, "img_size": 224,
        "early_stopping": 10,
        "tips": ["3 classes: COVID, Normal, Pneumonia", "Smaller dataset, watch for overfitting",
                 "Consider early stopping"],
    },
    "vinbigdata": {
        "title": "VinBigData (Binary)",
        "epochs": 30, "batch_size": 64, "multi_label": False, "img_size": 224,
        "tips": ["Binary classification", "Fast training", "Good for quick experiments"],
    },
    # Not in the spec: the embedded phantom set is small and CPU-friendly by design.
    "synthetic": {
        "title": "Built-in synthetic phantoms",
        "epochs": 10, "batch_size": 32, "img_size": 64,
        "tips": ["Deterministic phantom chest X-rays generated in memory",
                 "Several scanner domains: try --scenario domain_generalization"],
    },
}
GENERIC_DATASET_TIP = {"epochs": 100, "img_size": 224}

# --- Early stopping -------------------------------------------------------------------------
EARLY_STOPPING_EXAMPLE = 10  # "Stop if no improvement for 10 epochs"

# --- Training schedule (100 epochs) ---------------------------------------------------------
SCHEDULE_TABLE = [
    {"phase": "Warmup", "epochs": "0-5", "description": "LR ramps up"},
    {"phase": "Training", "epochs": "5-90", "description": "Cosine decay"},
    {"phase": "Final", "epochs": "90-100", "description": "LR near minimum"},
]
WARMUP_FRACTION = 0.05  # 5 of 100 epochs
WARMUP_MAX_EPOCHS = 5.0

# --- Memory optimization (if running out of memory), in the spec's order -------------------
MEMORY_STEPS = [
    "Reduce batch size: --batch_size 16",
    "Use gradient checkpointing (model-dependent): --grad_checkpointing",
    "Use smaller model variant",
    "Disable mixed precision for debugging: --no_mixed_precision",
]

# --- Monitoring training --------------------------------------------------------------------
MONITORING = {
    "overfitting": {
        "signs": ["Train loss decreasing, val loss increasing", "Train accuracy >> val accuracy"],
        "solution": "Early stopping, more regularization",
    },
    "underfitting": {
        "signs": ["Both losses plateau high", "Low accuracy"],
        "solution": "Train longer, larger model, lower regularization",
    },
    "good": {
        "signs": ["Both losses decreasing", "Gap between train/val stable",
                  "Metrics improving on validation"],
        "solution": "",
    },
}

# --- Model selection ------------------------------------------------------------------------
MODELS_BY_BUDGET = {
    "low": ["mobilenetv3_small", "efficientnet_b0"],
    "medium": ["resnet50", "vit_small_patch16"],
    "high": ["swin_base", "vit_base_patch16"],
}
MODELS_BY_TASK = {
    "quick_baseline": {"label": "Quick baseline", "model": "resnet50", "mode": "linear_probe"},
    "best_accuracy": {"label": "Best accuracy", "model": "swin_base", "mode": "full_finetune"},
    "fast_inference": {"label": "Fast inference", "model": "mobilenetv3_small", "mode": None},
    "transformers": {"label": "Transformers", "model": "vit_small_patch16", "mode": None},
}


# =========================== functions that apply the tables ===============================
@dataclass(frozen=True)
class Tip:
    """A suggested value with the reason shown to the user."""

    value: object
    reason: str


def is_transformer(family: str) -> bool:
    return family in ("vit", "swin")


def lr_tip(family: str, mode: str) -> Tip:
    row = LR_TABLE.get(family, LR_TABLE["cnn"])
    value = row[mode]
    if mode == "linear_probe":
        return Tip(value, f"{row['label']} linear probe: LR 0.1 with SGD ({SPEC} Learning Rate)")
    return Tip(value, f"{row['label']} fine-tune: LR {row['range']} with AdamW ({SPEC} Learning Rate)")


def weight_decay_tip(family: str, mode: str) -> Tip:
    if mode == "linear_probe":
        return Tip(WEIGHT_DECAY_TABLE["linear_probe"], "Linear probe: weight decay 0.0")
    if family == "cnn":
        return Tip(WEIGHT_DECAY_TABLE["full_finetune_cnn"], "Fine-tune (CNN): weight decay 1e-4")
    return Tip(WEIGHT_DECAY_TABLE["full_finetune_transformer"],
               "Fine-tune (Transformer): weight decay 0.05"
               + (" (ConvNeXt is trained with the transformer recipe)" if family == "convnext" else ""))


def layer_decay_for_depth(depth: Optional[int]) -> float:
    """Per-model default: the decay whose smallest LR scale equals the tips' 0.65 on a 12-block ViT
    (0.65^12 = 5.7e-3), so deep models are not frozen in practice (0.65 per block gives swin_base's
    24 levels 3.2e-5). 12 levels -> 0.65, 24 -> 0.81, 37 -> 0.87: the 0.75-0.9 the literature uses
    for deep models."""
    if not depth or depth <= LAYER_DECAY_REFERENCE_DEPTH:
        return LAYER_DECAY_TIP
    return round(LAYER_DECAY_TIP ** (LAYER_DECAY_REFERENCE_DEPTH / depth), 3)


def layer_decay_tip(family: str, mode: str, timm_name: Optional[str] = None) -> Optional[Tip]:
    if mode != "full_finetune" or family not in LAYER_DECAY_FAMILIES:
        return None
    from core.models.names import layer_decay_depth

    depth = layer_decay_depth(timm_name) if timm_name else None
    value = layer_decay_for_depth(depth)
    if value == LAYER_DECAY_TIP:
        return Tip(LAYER_DECAY_TIP, "Transformers: layer-wise LR decay 0.65, earlier layers get smaller LR")
    return Tip(value, f"Transformers: layer-wise LR decay; 0.65 is for 12 blocks, {timm_name} has {depth} levels, "
                      f"so {value} gives its first layers the same {LAYER_DECAY_TIP ** LAYER_DECAY_REFERENCE_DEPTH:.1e}"
                      " of the LR")


_SIZE_PATTERNS = [
    ("large", re.compile(r"(large|huge|giant|_l_|_h_|_g_|resnet(152|200)|efficientnet_b[6-8])")),
    ("medium", re.compile(r"(base|_b_|medium|resnet101|convnext_small|efficientnet_b[3-5]|swin_s)")),
]


def model_size(timm_name: str) -> str:
    """small / medium / large, from the timm name (drop-path tip)."""
    for size, pattern in _SIZE_PATTERNS:
        if pattern.search(timm_name):
            return size
    return "small"


def drop_path_tip(timm_name: str, mode: str) -> Tip:
    if mode == "linear_probe":
        return Tip(0.0, "Linear probe: the frozen backbone runs in eval mode, so drop path is off")
    size = model_size(timm_name)
    return Tip(DROP_PATH_BY_SIZE[size], f"Drop path {DROP_PATH_BY_SIZE[size]} for {size} models")


def batch_range_for_vram(vram_gib: Optional[float], mode: str) -> tuple[int, int, str]:
    """(low, high, reason) from the Batch Size table; vram None means no GPU."""
    if mode == "linear_probe":
        return (LINEAR_PROBE_MIN_BATCH, LINEAR_PROBE_MIN_BATCH * 2,
                "Linear probe: use larger batch sizes (256+)")
    if vram_gib is None:
        return (CPU_BATCH // 2, CPU_BATCH, "No GPU: small CPU batches")
    for min_gib, low, high in BATCH_BY_VRAM:
        if vram_gib >= min_gib - 0.5:  # cards report slightly under their nominal size
            label = f"{int(min_gib)}GB" + ("+" if min_gib == BATCH_BY_VRAM[0][0] else "")
            return (low, high, f"GPU memory {label}: batch {low}-{high}")
    low, high = BATCH_BY_VRAM[-1][1] // 2, BATCH_BY_VRAM[-1][1]
    return (low, high, f"GPU memory under 8GB ({vram_gib:.0f} GB): below the table's 16-32, use {low}-{high}")


def batch_tip(vram_gib: Optional[float], mode: str, timm_name: str, dataset: str) -> Tip:
    low, high, reason = batch_range_for_vram(vram_gib, mode)
    if mode == "linear_probe":
        return Tip(low, reason)
    if vram_gib is None:
        ds = DATASET_TIPS.get(dataset, {})
        value = min(ds.get("batch_size", high), high)
        return Tip(value, reason)
    value = low if model_size(timm_name) != "small" else high
    return Tip(value, f"{reason}; {'lower end for a larger model' if value == low else 'upper end for a small model'}")


# --- Random init (not in the spec: every table above assumes ImageNet-pretrained backbones) -----
SCRATCH_MODE = "full_finetune"
SCRATCH_LR = LR_TABLE["cnn"]["full_finetune"]
"""From scratch every layer must learn: fine-tune all weights at the table's largest AdamW LR (1e-3)."""


def scratch_tip(family: str, mode: str, lr: Optional[float]) -> Optional[str]:
    """Warning for the tips' pretrained-only settings on a randomly initialised backbone, or None.

    A linear probe trains a head on random features (it measures nothing), and the transformer
    fine-tune LRs (5e-5) barely move random weights. The from-scratch setting suggested instead is
    full fine-tune at LR 1e-3 with AdamW, or turning pretrained weights on.
    """
    fix = f"from scratch use --mode {SCRATCH_MODE} --lr {SCRATCH_LR:g} (AdamW), or --pretrained"
    if mode == "linear_probe":
        return (f"linear_probe on a randomly initialised backbone (pretrained: false) trains a head on random "
                f"features; the linear-probe tips (LR 0.1, SGD) assume pretrained weights: {fix}")
    if lr is not None and lr < SCRATCH_LR:
        label = LR_TABLE.get(family, LR_TABLE["cnn"])["label"]
        return (f"lr {lr:g} is a fine-tune LR for pretrained weights ({label}); on a randomly initialised "
                f"backbone (pretrained: false) it barely trains: {fix}")
    return None


def augmentation_tip(scenario: str, mode: str) -> Tip:
    if mode == "linear_probe" and scenario == "single_domain":
        return Tip("none", "Linear probe: no augmentation, so backbone features are computed once and cached")
    value, reason = AUGMENTATION_BY_SCENARIO[scenario]
    return Tip(value, reason)


def warmup_tip(epochs: int) -> Tip:
    value = round(min(WARMUP_MAX_EPOCHS, WARMUP_FRACTION * epochs), 3)
    return Tip(value, "Warmup 0-5 of 100 epochs (5%, at most 5), then cosine decay per step")


def dataset_tip(dataset: str) -> dict:
    return DATASET_TIPS.get(dataset, GENERIC_DATASET_TIP)


def loss_tip(dataset: str, multi_label: bool) -> Tip:
    if multi_label:
        reason = "Multi-label: BCE with per-class pos_weight from training counts"
        if dataset == "nih":
            reason = "NIH is highly imbalanced: class weights (BCE pos_weight) or focal loss"
        return Tip("bce", reason)
    return Tip("ce", "Single-label: cross-entropy")


def models_for_budget(budget: str) -> list[str]:
    return list(MODELS_BY_BUDGET[budget])


def smaller_model(seed_name: str) -> Optional[str]:
    """The next model down the budget table, for the advisor's 'does not fit' advice."""
    order = MODELS_BY_BUDGET["high"] + MODELS_BY_BUDGET["medium"] + MODELS_BY_BUDGET["low"]
    if seed_name in order:
        i = order.index(seed_name)
        return order[i + 1] if i + 1 < len(order) else None
    return MODELS_BY_BUDGET["low"][0]
