"""TrainConfig: the one validated description of a run, shared by train.py, the CLI and the TUI.

Values come in layers (DESIGN.md merge order):
    default < tip < preset < config file < flag
Each resolved value remembers which layer set it, so `--print-config` can say why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

SOURCES = ("default", "tip", "preset", "config file", "flag")
MODES = ("linear_probe", "full_finetune")
AUGMENTATIONS = ("none", "standard", "mixup", "xdomainmix", "pipmix", "xdomainmix+pipmix")
LOSSES = ("auto", "ce", "bce", "focal", "asl")
PRESET_META_KEYS = ("name", "description", "notes", "group", "tags")
MODE_SECTIONS = MODES  # YAML sections like `full_finetune: {layer_decay: 0.65}`


class ConfigError(ValueError):
    """A bad key, value or combination; the message is one line naming the key and what is allowed."""


class TrainConfig(BaseModel):
    """Every knob of a run. `None` means "fill from the tips for this model/mode/dataset"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, protected_namespaces=())

    # --- model ---
    model: str = "resnet50"
    """Seed alias (vit_small_patch16, swin_base, ConvNeXt, ...) or any timm model name."""
    mode: Literal["linear_probe", "full_finetune"] = "full_finetune"
    """linear_probe: frozen backbone + BN/Linear head (SGD). full_finetune: all weights (AdamW)."""
    pretrained_path: Optional[str] = None
    """Local weights file (timm/torchvision state dict or .safetensors). Never downloaded."""
    drop_path_rate: Optional[float] = None
    """Stochastic depth; tip: 0.1 small, 0.2 medium, 0.3 large models."""
    layer_decay: Optional[float] = None
    """Layer-wise LR decay for transformers (tip 0.65); rejected for CNNs."""
    grad_checkpointing: bool = False
    """Trade compute for memory where the timm model supports it."""
    channels_last: Optional[bool] = None
    """NHWC memory format; default on for CNNs on CUDA."""

    # --- data ---
    dataset: str = "synthetic"
    """synthetic (built in), folder, csv, nih, covidx, vinbigdata."""
    data_dir: Optional[str] = None
    """Root folder of the dataset as downloaded."""
    csv: Optional[str] = None
    """Label file for --dataset csv (path, label(s), optional domain/patient/split)."""
    label_file: Optional[str] = None
    """Override of the dataset's label file (e.g. a specific train_COVIDx9A.txt)."""
    multi_label: Optional[bool] = None
    """Sigmoid/BCE multi-label task; default is the dataset's natural task."""
    img_size: Optional[int] = None
    """Training resolution (square); tip from the dataset and model."""
    val_fraction: float = 0.1
    """Share of train(-val) patients held out for validation when the dataset has no val split."""
    holdout_domain: Optional[str] = None
    """Leave one domain out: validate on this domain (name or number, see `medcls data stats`) and
    train on all the others, to measure how a model does on a scanner or site it never saw."""
    vin_consensus: Literal["any", "majority"] = "majority"
    """VinBigData: abnormal if any radiologist / the majority marked a finding."""
    synthetic_task: Literal["multiclass", "multilabel", "binary"] = "multiclass"
    """Task of the built-in phantom set."""
    synthetic_size: int = 600
    """Number of phantom images (train+val+test)."""
    cache_dir: Optional[str] = None
    """Where the resized pixel cache lives (default: <data_dir>/.medcls_cache)."""
    num_workers: Optional[int] = None
    """DataLoader worker processes; default 0 for in-memory data, else up to 8."""

    # --- optimisation ---
    epochs: Optional[int] = None
    """Training epochs; tip from the dataset section of the spec."""
    batch_size: Optional[Union[int, Literal["auto"]]] = None
    """Per-step batch; tip by GPU memory (or 'auto' = measured probe)."""
    grad_accum_steps: int = 1
    """Effective batch = batch_size x grad_accum_steps."""
    lr: Optional[float] = None
    """Peak learning rate; tip by model family and mode."""
    weight_decay: Optional[float] = None
    """Tip: 0 linear probe, 1e-4 CNN fine-tune, 0.05 transformer fine-tune."""
    warmup_epochs: Optional[float] = None
    """Linear warmup length (fractional epochs allowed), then cosine decay per step."""
    min_lr_ratio: float = 0.01
    """Cosine floor as a fraction of the peak LR ("LR near minimum" at the end)."""
    label_smoothing: float = 0.0
    """Label smoothing for CE; for BCE y*(1-e)+e/2."""
    loss: Literal["auto", "ce", "bce", "focal", "asl"] = "auto"
    """auto: CE single-label, BCE with pos_weight multi-label."""
    class_weights: bool = False
    """CE only: weight classes by inverse training frequency n/(C*n_c) (mean weight 1 over the training set)."""
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 0.0
    asl_clip: float = 0.05
    mixed_precision: bool = True
    """bf16 (or fp16 + GradScaler) on CUDA; always off on CPU."""
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"

    # --- augmentation ---
    augmentation: Optional[str] = None
    """none, standard, mixup, xdomainmix, pipmix, xdomainmix+pipmix; tip by scenario."""
    scenario: Literal["single_domain", "multi_domain", "domain_generalization"] = "single_domain"
    """Picks the augmentation tip (spec table 'When to Use XDomainMix/PipMix')."""
    mixup_alpha: float = 0.0
    """Beta(alpha, alpha) for mixing; 0 disables plain input mixup."""
    mixup_prob: float = 1.0
    """Probability a batch is mixed."""
    mixup_cross_domain: bool = False
    """Draw the mixup partner from another domain when possible."""
    xdm_warmup_steps: int = 3000
    """XDomainMix ERM warm-up steps before augmented features are used."""
    xdm_discard_prob: float = 0.2
    """XDomainMix: probability (once per batch) of dropping the class-specific domain-specific part."""
    xdm_tau_step_every: int = 100
    """XDomainMix: steps between domain-quantile changes (tau 0.9 -> 0.5 by 0.1, then back to 0.9)."""
    xdm_domain_lr: Optional[float] = None
    """XDomainMix: Adam LR of the domain head (a linear probe on detached features, own optimizer);
    null = the main LR and weight decay, as the authors; a number = that LR without weight decay."""
    xdm_domain_update: Literal["after_step", "same_pass"] = "after_step"
    """XDomainMix: train the domain head after each model update on the updated features (the
    authors, one extra forward pass) or on the same pass's features before the update (cheaper)."""
    pipmix_patch: int = 32
    """PipMix patch size in px (the grid keeps at least 2x2 patches on small images)."""

    # --- early stopping / monitoring ---
    early_stopping: Optional[int] = None
    """Patience in epochs; None/0 disables."""
    monitor: Optional[str] = None
    """val_loss, val_auroc or val_acc; default val_auroc."""
    monitor_mode: Optional[Literal["min", "max"]] = None
    """Derived from the monitor when unset."""
    min_delta: float = 0.0
    """Smallest change of the monitor that resets the patience counter (best.pt follows the monitor alone)."""
    divergence_threshold: Optional[float] = None
    """Stop as soon as the monitored value is worse than this (above it for val_loss, below it for
    val_auroc / val_acc), as Lightning's EarlyStopping; that epoch is never saved as best."""
    max_nonfinite_steps: int = 5
    """Stop after this many optimizer steps in a row with a non-finite loss or gradient; each such step
    is skipped (weights unchanged), and checkpoints keep the last finite weights."""
    loss_explosion_factor: Optional[float] = 1000.0
    """Stop when a step's training loss exceeds this multiple of the first epoch's running loss
    (divergence); null disables the check."""

    # --- run ---
    seed: int = 42
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    output_dir: str = "runs"
    run_name: Optional[str] = None
    max_steps_per_epoch: Optional[int] = None
    """Cap on optimizer steps per epoch (quick experiments, tests, benchmarks)."""
    log_every: int = 10
    """Steps between metrics.jsonl step records."""

    @field_validator("mode", mode="before")
    @classmethod
    def _normalise_mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower().replace("-", "_")
        return value

    @field_validator("augmentation")
    @classmethod
    def _known_augmentation(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        norm = value.strip().lower()
        if norm not in AUGMENTATIONS:
            raise ValueError(f"must be one of {', '.join(AUGMENTATIONS)}")
        return norm

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        v = value.strip().lower()
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be auto, cpu, cuda or cuda:N")

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        if value not in ("val_loss", "val_auroc", "val_acc"):
            raise ValueError("must be val_loss, val_auroc or val_acc")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> "TrainConfig":
        positive_ints = ("epochs", "grad_accum_steps", "synthetic_size", "log_every", "pipmix_patch",
                         "xdm_tau_step_every", "max_nonfinite_steps")
        for key in positive_ints:
            val = getattr(self, key)
            if val is not None and val < 1:
                raise ValueError(f"{key}: must be >= 1 (got {val})")
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 or 'auto' (got {self.batch_size})")
        if self.img_size is not None and self.img_size < 16:
            raise ValueError(f"img_size: must be >= 16 (got {self.img_size})")
        for key in ("lr", "xdm_domain_lr"):
            val = getattr(self, key)
            if val is not None and not val > 0:
                raise ValueError(f"{key}: must be > 0 (got {val})")
        for key in ("weight_decay", "warmup_epochs", "mixup_alpha", "min_delta", "xdm_warmup_steps",
                    "focal_gamma", "asl_gamma_neg", "asl_gamma_pos"):
            val = getattr(self, key)
            if val is not None and val < 0:
                raise ValueError(f"{key}: must be >= 0 (got {val})")
        for key in ("label_smoothing", "mixup_prob", "min_lr_ratio", "xdm_discard_prob",
                    "drop_path_rate", "val_fraction", "asl_clip"):
            val = getattr(self, key)
            if val is not None and not 0.0 <= val <= 1.0:
                raise ValueError(f"{key}: must be between 0 and 1 (got {val})")
        if not (0.0 <= self.focal_alpha <= 1.0 or self.focal_alpha == -1):
            raise ValueError(f"focal_alpha: must be between 0 and 1, or -1 for no class balancing (got {self.focal_alpha})")
        if self.label_smoothing >= 1.0:
            raise ValueError("label_smoothing: must be < 1")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay: must be in (0, 1] (got {self.layer_decay})")
        if self.loss_explosion_factor is not None and not 1.0 < self.loss_explosion_factor < float("inf"):
            raise ValueError(f"loss_explosion_factor: must be a number > 1, or null to disable "
                             f"(got {self.loss_explosion_factor})")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch: must be >= 1")
        if self.early_stopping is not None and self.early_stopping < 0:
            raise ValueError("early_stopping: patience must be >= 0")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError("num_workers: must be >= 0")
        return self


FIELD_NAMES = tuple(TrainConfig.model_fields)


def field_doc(name: str) -> str:
    """The docstring under a field, for help text and the TUI."""
    info = TrainConfig.model_fields[name]
    return info.description or ""


def _attach_field_docs() -> None:
    """Pydantic ignores attribute docstrings unless asked; read them from the source once."""
    import ast
    import inspect

    src = inspect.getsource(TrainConfig)
    tree = ast.parse(src)
    body = tree.body[0].body  # type: ignore[attr-defined]
    for prev, node in zip(body, body[1:]):
        if isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr) and isinstance(
            getattr(node, "value", None), ast.Constant
        ) and isinstance(node.value.value, str):
            name = prev.target.id  # type: ignore[attr-defined]
            if name in TrainConfig.model_fields:
                TrainConfig.model_fields[name].description = node.value.value.strip()


_attach_field_docs()


@dataclass
class ResolvedConfig:
    """A validated TrainConfig plus where each value came from and why (for tips)."""

    config: TrainConfig
    sources: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> list[tuple[str, Any, str, str]]:
        """(key, value, source, reason) rows in field order."""
        data = self.config.model_dump()
        return [
            (k, data[k], self.sources.get(k, "default"), self.reasons.get(k, ""))
            for k in FIELD_NAMES
        ]


def _format_validation_error(err: ValidationError, origin: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "config"
    msg = first.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        allowed = ", ".join(FIELD_NAMES)
        return f"{origin}unknown key '{loc}'. Allowed keys: {allowed}"
    if first.get("type") == "literal_error":
        return f"{origin}{loc}: {msg} (got {first.get('input')!r})"
    if loc == "config" or msg.startswith(loc + ":"):
        return f"{origin}{msg}"
    return f"{origin}{loc}: {msg} (got {first.get('input')!r})"


def validate_layer(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """Check one layer's keys exist and values have the right type, naming the origin on error."""
    unknown = [k for k in values if k not in FIELD_NAMES]
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key '{unknown[0]}'. Allowed keys: {', '.join(FIELD_NAMES)}"
        )
    try:
        TrainConfig.model_validate({k: v for k, v in values.items()})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{origin}: ")) from None
    return values


def flatten_yaml_config(data: Any, origin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a preset/config YAML mapping into (flat config values, preset metadata).

    Mode sections (`full_finetune: {layer_decay: 0.65}`) are kept aside under their mode name
    and applied only when that mode is chosen (see `apply_mode_sections`).
    """
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a YAML mapping of config keys, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in PRESET_META_KEYS:
            meta[key] = value
        elif key in MODE_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: '{key}' must be a mapping like {{layer_decay: 0.65}}")
            for sub in value:
                if sub not in FIELD_NAMES:
                    raise ConfigError(
                        f"{origin}: unknown key '{key}.{sub}'. Allowed keys: {', '.join(FIELD_NAMES)}"
                    )
            flat.setdefault("__sections__", {})[key] = dict(value)
        elif key not in FIELD_NAMES:
            raise ConfigError(f"{origin}: unknown key '{key}'. Allowed keys: {', '.join(FIELD_NAMES)}")
        else:
            flat[key] = value
    return flat, meta


def load_yaml_file(path: str | Path) -> Any:
    """Read YAML safely; a syntax error names the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None


def dump_config_yaml(config: TrainConfig, extra: Optional[dict[str, Any]] = None) -> str:
    """The resolved config as YAML, itself a valid preset file."""
    data: dict[str, Any] = {}
    if extra:
        data.update(extra)
    data.update(config.model_dump())
    return yaml.safe_dump(data, sort_keys=False)
