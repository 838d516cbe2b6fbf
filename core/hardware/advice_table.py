"""Batch advice without measuring: the tips' table for this card, scaled for model, size, precision.

The spec's Batch Size table (8 GB 16-32, 16 GB 32-64, 24 GB+ 64-128, linear probe 256+) gives
the *effective* batch the recipe wants. What fits per step depends on image size and precision,
so the per-step batch is scaled and gradient accumulation makes up the rest (spec: effective
batch = batch_size x accumulation_steps). These are estimates; `probe_batch_size` measures.
Instant (no model is built): the TUI calls it on every settings change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from core.config import tips
from core.hardware.gpu_memory import GpuInfo, HardwareInfo, read_hardware, training_gpu
from core.hardware.host import nominal_gib

REFERENCE_IMG = 224
"""The spec's batch table is for the seed models at their native 224 px."""
FP32_FACTOR = 0.5
"""Without AMP activations are float32: about half the images per step of bf16/fp16."""
CHECKPOINT_FACTOR = 3.0
"""Estimate: timm's per-block gradient checkpointing keeps about a third of the activations."""
LINEAR_PROBE_FACTOR = 4.0
"""Estimate: a frozen backbone keeps no activations for backward, about 4x the images per step."""
OTHER_PROCESS_NOISE_GIB = 0.5
"""Below this, 'used by others' is driver reservation noise, not another job."""
PARAMS_M = {"swin_base": 86.7, "vit_base_patch16": 85.8, "resnet50": 23.5, "vit_small_patch16": 21.7,
            "convnext": 27.8, "deit": 21.7, "efficientnet_b0": 4.0, "mobilenetv3_small": 1.5}
"""Backbone parameters (millions, timm, no classifier) of the seed models, for the model advice."""


@dataclass
class Advice:
    batch_low: int
    """The spec table's range for this card and mode."""
    batch_high: int
    suggested_batch: int
    """Per-step (micro-)batch expected to fit."""
    grad_accum_steps: int
    effective_batch: int
    """suggested_batch x grad_accum_steps: the tips' target."""
    reasons: list[str] = field(default_factory=list)
    model_advice: list[str] = field(default_factory=list)
    """Filled when the per-step batch is far below the tips' range (item 4 of the issue)."""
    precision: str = ""
    """What the run will compute in on this hardware (precision_text), for the advice's heading."""


def planning_gib(gpu: GpuInfo) -> tuple[float, list[str]]:
    """Card class minus other processes' memory, with the reasons."""
    nominal = nominal_gib(gpu.total_gib)
    free = getattr(gpu, "free_gib", None)
    reasons = [f"GPU {gpu.index} {gpu.name}: {gpu.total_gib:.1f} GiB total"
               + (f", {free:.1f} GiB free" if free is not None else "")
               + (f" ({nominal:.0f} GB card)" if nominal != gpu.total_gib else "")]
    others = getattr(gpu, "used_by_other_processes_gib", 0.0) or 0.0
    if others >= OTHER_PROCESS_NOISE_GIB:
        planned = max(0.0, nominal - others)
        reasons.append(f"other processes hold {others:.1f} GiB: planning with {planned:.1f} GiB")
        return planned, reasons
    return nominal, reasons


def target_batch(low: int, high: int, mode: str, timm_name: str) -> int:
    """The effective batch the tips aim for: upper end for small models, lower end otherwise."""
    if mode == "linear_probe":
        return tips.LINEAR_PROBE_MIN_BATCH
    return high if tips.model_size(timm_name) == "small" else low


def pow2_floor(n: float) -> int:
    return 1 if n < 2 else 2 ** int(math.floor(math.log2(n)))


def split_batch(target: int, per_step_max: int) -> tuple[int, int]:
    """(micro-batch, accumulation) reaching `target` with micro-batch <= per_step_max."""
    if per_step_max >= target:
        return target, 1
    accum = 1
    while math.ceil(target / accum) > max(1, per_step_max):
        accum *= 2
    return math.ceil(target / accum), accum


def precision_text(mixed_precision: bool, on_gpu: bool) -> str:
    """Mixed precision as a run on this hardware will use it: only on a GPU (core.training.precision's rule,
    autocast off CUDA is float32), so a CPU machine never reads "mixed precision on"."""
    if not on_gpu:
        return "mixed precision off (no GPU: float32 on CPU)"
    return "mixed precision on (bf16/fp16)" if mixed_precision else "mixed precision off (--no_mixed_precision)"


def memory_scale(img_size: int, mixed_precision: bool, on_gpu: bool, grad_checkpointing: bool = False,
                 mode: str = "full_finetune") -> tuple[float, list[str]]:
    """How many images per step relative to the table's setting (224 px, AMP), with reasons."""
    scale, reasons = (REFERENCE_IMG / img_size) ** 2, []
    if img_size != REFERENCE_IMG:
        reasons.append(f"img_size {img_size}: about {1 / scale:.2f}x the memory per image of {REFERENCE_IMG} px")
    if on_gpu and not mixed_precision:
        scale *= FP32_FACTOR
        reasons.append("mixed precision off: float32 activations, about half the images per step")
    if grad_checkpointing and mode != "linear_probe":
        scale *= CHECKPOINT_FACTOR
        reasons.append(f"grad checkpointing: about {CHECKPOINT_FACTOR:.0f}x the images per step (estimate)")
    return scale, reasons


def table_advice(model: str, mode: str, img_size: Optional[int], mixed_precision: bool,
                 hardware: Optional[HardwareInfo] = None, device: str = "auto",
                 grad_checkpointing: bool = False) -> Advice:
    """Spec table for the training GPU (or CPU), scaled for this model/mode/size/precision."""
    from core.models.names import resolve_model_name

    hardware = hardware if hardware is not None else read_hardware()
    img_size = img_size or REFERENCE_IMG
    timm_name = resolve_model_name(model)
    gpu = training_gpu(hardware, device)
    reasons: list[str] = []
    planned = None
    if gpu is not None:
        planned, reasons = planning_gib(gpu)
    else:
        reasons.append("no GPU: CPU training (mixed precision is off on CPU)")
    low, high, range_reason = tips.batch_range_for_vram(planned, mode)
    reasons.append(range_reason)
    target = target_batch(low, high, mode, timm_name)
    reasons.append(f"effective batch {target} for {model} ({tips.model_size(timm_name)} model, {mode})")
    scale, why = memory_scale(img_size, mixed_precision, gpu is not None, grad_checkpointing, mode)
    reasons += why
    per_step = target if scale >= 1 else pow2_floor(target * scale)
    micro, accum = split_batch(target, per_step)
    if accum > 1:
        reasons.append(f"{micro} per step x {accum} accumulation steps = effective {micro * accum}")
    advice = Advice(batch_low=low, batch_high=high, suggested_batch=micro, grad_accum_steps=accum,
                    effective_batch=micro * accum, reasons=reasons,
                    precision=precision_text(mixed_precision, gpu is not None))
    if gpu is not None and micro < low / 2:
        advice.model_advice = model_advice(model, mode, img_size, mixed_precision=mixed_precision,
                                           grad_checkpointing=grad_checkpointing, max_batch=micro,
                                           target=target)
    return advice


def seed_name(model: str) -> Optional[str]:
    """The spec's seed alias for a model name (swin_base_patch4_window7_224 -> swin_base)."""
    from core.models.names import MODEL_ALIASES

    key = model.strip().lower()
    if key in PARAMS_M:
        return key
    return next((alias for alias, timm in MODEL_ALIASES.items() if timm == key and alias in PARAMS_M), None)


def _tier(name: Optional[str]) -> int:
    order = list(tips.MODELS_BY_BUDGET)  # low, medium, high
    return next((order.index(b) for b, names in tips.MODELS_BY_BUDGET.items() if name in names), len(order))


def next_smaller_model(model: str) -> Optional[str]:
    """Walk the budget table down to the first model of a lower budget with fewer parameters
    (swin_base -> resnet50, not vit_base_patch16, which needs about as much memory)."""
    seed = seed_name(model)
    current = PARAMS_M.get(seed or "", math.inf)
    candidate = tips.smaller_model(seed or model)
    while candidate is not None and (PARAMS_M.get(candidate, 0.0) >= current
                                     or (seed is not None and _tier(candidate) >= _tier(seed))):
        candidate = tips.smaller_model(candidate)
    return candidate


def _uses_batchnorm(model: str) -> bool:
    """CNN families train with BatchNorm (ConvNeXt, ViT and Swin use LayerNorm)."""
    from core.models.names import model_family, resolve_model_name

    try:
        return model_family(resolve_model_name(model)) == "cnn"
    except ValueError:
        return False


def _fits(budget: Optional[float], fixed: Optional[float], per_image: Optional[float], factor: float,
          max_batch: Optional[int]) -> str:
    """'~N per step' from the measured memory model, else from the current max batch."""
    if budget is not None and fixed is not None and per_image:
        return f"~{max(0, int((budget - fixed) / (per_image / factor)))} per step"
    if max_batch:
        return f"~{int(max_batch * factor)} per step"
    return f"about {factor:.1f}x the images per step"


def model_advice(model: str, mode: str, img_size: int, *, mixed_precision: bool = True,
                 grad_checkpointing: bool = False, max_batch: Optional[int] = None, target: Optional[int] = None,
                 budget_gib: Optional[float] = None, fixed_gib: Optional[float] = None,
                 per_image_gib: Optional[float] = None) -> list[str]:
    """What to change when even batch 1 does not fit, or the batch is far below the tips' range.

    With the probe's memory model (budget, fixed memory, memory per image) the numbers are
    estimates from measurements; without it they scale the current max batch. Order follows
    the spec's Memory Optimization list.
    """
    fit = lambda factor: _fits(budget_gib, fixed_gib, per_image_gib, factor, max_batch)  # noqa: E731
    lines = []
    if not max_batch:
        where = f" in {budget_gib:.1f} GiB" if budget_gib is not None else ""
        lines.append(f"{model} at {img_size} px does not fit even at batch 1{where}")
    elif target:
        lines.append(f"max batch {max_batch} is far below the tips' effective batch {target}: "
                     f"accumulation would need {math.ceil(target / max_batch)} steps")
    if mode != "linear_probe" and not grad_checkpointing:
        lines.append(f"--grad_checkpointing: {fit(CHECKPOINT_FACTOR)} (about {CHECKPOINT_FACTOR:.0f}x, "
                     "costs ~30% more compute)")
    if img_size > 128:
        smaller = max(128, int(img_size * 0.75) // 32 * 32)
        lines.append(f"--img_size {smaller}: {fit((img_size / smaller) ** 2)} ({(img_size / smaller) ** 2:.2f}x)")
    if mode != "linear_probe":
        lp_fixed = fixed_gib / 4 if fixed_gib is not None else None  # weights only: no grads, no AdamW moments
        lp = _fits(budget_gib, lp_fixed, per_image_gib, LINEAR_PROBE_FACTOR, max_batch)
        lines.append(f"--mode linear_probe: {lp} (frozen backbone: no gradients or optimizer state)")
    smaller_model = next_smaller_model(model)
    if smaller_model is not None:
        seed = seed_name(model)
        ratio = (PARAMS_M[seed] / PARAMS_M[smaller_model]) if seed and smaller_model in PARAMS_M else None
        detail = (f"{PARAMS_M[smaller_model]:.1f}M parameters vs {PARAMS_M[seed]:.1f}M ({ratio:.1f}x fewer)"
                  if ratio else f"{PARAMS_M.get(smaller_model, 0):.1f}M parameters")
        lines.append(f"--model {smaller_model} (next in the budget table): {detail}")
    if not mixed_precision:
        lines.append(f"--mixed_precision: {fit(1 / FP32_FACTOR)} (bf16/fp16 activations)")
    if max_batch and max_batch < 8 and mode != "linear_probe" and _uses_batchnorm(model):
        lines.append("BatchNorm models learn poorly from micro-batches under 8 images: prefer one of the above "
                     "to more accumulation")
    return lines
