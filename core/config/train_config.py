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
UPPER_BOUNDS = {"synthetic_size": 200_000, "img_size": 4096, "epochs": 100_000, "batch_size": 65_536,
                "grad_accum_steps": 4096, "num_workers": 256, "log_every": 10**9, "checkpoint_every": 10**9,
                "dist_timeout_minutes": 7 * 24 * 60, "warmup_epochs": 100_000, "early_stopping": 100_000,
                "max_steps_per_epoch": 10**9, "max_nonfinite_steps": 10**9, "pipmix_patch": 4096,
                "xdm_tau_step_every": 10**9, "xdm_warmup_steps": 10**9, "checkpoint_minutes": 10**6,
                "lr": 1e6, "xdm_domain_lr": 1e6, "weight_decay": 100.0, "mixup_alpha": 1000.0,
                "min_delta": 1e6, "focal_gamma": 100.0, "asl_gamma_neg": 100.0, "asl_gamma_pos": 100.0,
                "loss_explosion_factor": 1e12, "seed": 2**32 - 1,
                "data_seed": 2**32 - 1}
"""Sanity ceilings, one for every number (a test checks none is missing): a typo like --synthetic_size 1e20
is one error, not an out-of-memory hour later, and --warmup_epochs 1e308 is not an OverflowError when
the steps are counted."""
DIVERGENCE_THRESHOLD_MAX = 1e12
"""|divergence_threshold| ceiling (it may be negative: a val_loss can be compared with anything)."""
YAML_MAX_BYTES = 1_000_000
YAML_MAX_NODES = 100_000
"""Nodes a YAML file may expand to, aliases counted each time they are used (billion laughs)."""
YAML_MAX_DEPTH = 64
MODE_SECTIONS = MODES  # YAML sections like `full_finetune: {layer_decay: 0.65}`


class ConfigError(ValueError):
    """A bad key, value or combination; the message is one line naming the key and what is allowed.

    Keys and values quoted in it come from users' files: control characters (a newline inside a YAML
    key, say) are written escaped, so the message stays one line whatever the input."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(str(message)))


def _one_line(text: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class TrainConfig(BaseModel):
    """Every knob of a run. `None` means "fill from the tips for this model/mode/dataset"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, protected_namespaces=(),
                              allow_inf_nan=False)

    # --- model ---
    model: str = "resnet50"
    """Seed alias (vit_small_patch16, swin_base, ConvNeXt, ...) or any timm model name."""
    mode: Literal["linear_probe", "full_finetune"] = "full_finetune"
    """linear_probe: frozen backbone + BN/Linear head (SGD). full_finetune: all weights (AdamW)."""
    pretrained: bool = True
    """Start from timm's ImageNet weights for the model (Hugging Face cache, downloaded once; honours
    HF_HOME / HF_HUB_OFFLINE). Off (--no_pretrained): random init, on purpose. The tips assume it is on."""
    pretrained_path: Optional[str] = None
    """Local weights instead of the hub: a .pth/.bin/.safetensors file or a timm/HF folder (model.safetensors,
    pytorch_model.bin); every backbone tensor must match."""
    drop_path_rate: Optional[float] = None
    """Stochastic depth; tip: 0.1 small, 0.2 medium, 0.3 large models."""
    layer_decay: Optional[float] = None
    """Layer-wise LR decay for transformers (tip 0.65); rejected for CNNs."""
    grad_checkpointing: bool = False
    """Trade compute for memory where the timm model supports it."""
    channels_last: Optional[bool] = None
    """NHWC memory format; default on for CNNs on CUDA."""
    compile: bool = False
    """torch.compile the model: slower start (compiling), then faster steps on a GPU; off by default."""

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
    """Leave one domain out: validate on this domain (name or number, see `medcls data stats`), train on the others."""
    vin_consensus: Literal["any", "majority"] = "majority"
    """VinBigData: abnormal if any radiologist / the majority marked a finding."""
    synthetic_task: Literal["multiclass", "multilabel", "binary"] = "multiclass"
    """Task of the built-in phantom set."""
    synthetic_size: int = 600
    """Number of phantom images (train+val+test)."""
    data_seed: Optional[int] = None
    """Seed of the data: the phantoms and the train/val split (default: `seed`). `--repeat`/`--seeds` keep it
    fixed, so runs of different seeds are scored on the same images (`medcls compare`)."""
    synthetic_confound: float = 0.0
    """Phantoms only: share of images whose scanner is chosen by their class, a built-in shortcut (the scanner's
    look predicts the label) to see the shortcut checks fire; 0 keeps the scanners' mild prevalence shift only."""

    # --- shortcut checks (README "Is it the finding or the hospital?") ---
    shortcut_min_association: float = 0.3
    """The shortcut checks speak only when the source carries the label: Cramér's V of source vs label at least this."""
    shortcut_margin: float = 0.05
    """Warn when the model's macro AUROC beats the source-only baseline's by less than this."""
    shortcut_gap: float = 0.10
    """Warn when the pooled within-source AUROC is this much (or more) below the overall AUROC."""
    cache_dir: Optional[str] = None
    """Where the resized pixel cache lives (default: <data_dir>/.medcls_cache)."""
    feature_cache: bool = True
    """Linear probe without augmentation: run the frozen backbone once and keep its features on disk
    (keyed by model, weights, data and size) for the next epochs and later runs; off runs it every epoch."""
    num_workers: Optional[int] = None
    """DataLoader worker processes (kept across epochs); default: usable cores - 1, at most 8; 0 for in-memory
    pixels without per-image augmentation or on the CPU."""

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
    """Focal loss: how strongly easy examples are down-weighted (0 = plain BCE/CE)."""
    focal_alpha: float = 0.25
    """Focal loss: weight of the positive class, 0-1 (-1 = no class balancing)."""
    asl_gamma_neg: float = 4.0
    """Asymmetric loss: focusing on negatives (higher = easy negatives count less)."""
    asl_gamma_pos: float = 0.0
    """Asymmetric loss: focusing on positives (0 keeps every positive at full weight)."""
    asl_clip: float = 0.05
    """Asymmetric loss: probability margin below which negatives are ignored (0-1)."""
    mixed_precision: bool = True
    """bf16 (or fp16 + GradScaler) on CUDA; always off on CPU."""
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"
    """Mixed-precision type on CUDA: auto (bf16 where supported, else fp16 with loss scaling), bf16 or fp16."""

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
    """Early stopping: smallest change of the monitor that resets the patience counter (best.pt follows the monitor alone)."""
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
    """Random seed for weights, data order and augmentation (same seed + CPU = same result)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    output_dir: str = "runs"
    """Folder that holds the run folders (runs/<run_name>/)."""
    run_name: Optional[str] = None
    """Name of the run folder; default: model, dataset and a timestamp."""
    max_steps_per_epoch: Optional[int] = None
    """Cap on optimizer steps per epoch (quick experiments, tests, benchmarks)."""
    log_every: int = 10
    """Steps between metrics.jsonl step records."""
    tensorboard: bool = False
    """Also write TensorBoard scalars and hyper-parameters to <run>/tensorboard (needs the tensorboard extra)."""
    checkpoint_every: Optional[int] = None
    """Also write last.pt every N optimizer steps, so a kill loses at most N steps (default: time-based)."""
    checkpoint_minutes: float = 10.0
    """Without --checkpoint_every: write last.pt at least this often mid-epoch (0 = only at epoch end)."""

    # --- several processes (torchrun / medcls train --gpus N) ---
    sync_bn: bool = False
    """Multi-GPU CNNs: BatchNorm statistics over the global batch (torch SyncBatchNorm; CUDA only)."""
    dist_timeout_minutes: float = 30.0
    """Multi-process runs: a collective that waits longer than this (a rank died or hangs) ends the job
    with a message instead of a hang."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        """YAML `lr: true` must not train at 1.0: booleans are not numbers (pydantic would coerce)."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, bool) and key in NUMERIC_FIELDS:
                    raise ValueError(f"{key}: must be a number, not a boolean (got {value})")
        return data

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
        for key, top in UPPER_BOUNDS.items():
            val = getattr(self, key)
            if isinstance(val, (int, float)) and val > top:  # batch_size may be 'auto'
                raise ValueError(f"{key}: must be at most {top} (got {val})")
        if self.divergence_threshold is not None and abs(self.divergence_threshold) > DIVERGENCE_THRESHOLD_MAX:
            raise ValueError(f"divergence_threshold: must be between -{DIVERGENCE_THRESHOLD_MAX:g} and "
                             f"{DIVERGENCE_THRESHOLD_MAX:g} (got {self.divergence_threshold})")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0 (got {self.seed})")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: must be >= 1 step (got {self.checkpoint_every})")
        if not self.dist_timeout_minutes > 0:
            raise ValueError(f"dist_timeout_minutes: must be > 0 (got {self.dist_timeout_minutes})")
        if self.checkpoint_minutes < 0:
            raise ValueError(f"checkpoint_minutes: must be >= 0 (got {self.checkpoint_minutes})")
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
                    "drop_path_rate", "val_fraction", "asl_clip", "synthetic_confound", "shortcut_min_association",
                    "shortcut_margin", "shortcut_gap"):
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


def _is_numeric(annotation: Any) -> bool:
    import typing

    if annotation in (int, float):
        return True
    return any(_is_numeric(a) for a in typing.get_args(annotation))


NUMERIC_FIELDS = frozenset(name for name, info in TrainConfig.model_fields.items() if _is_numeric(info.annotation))


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
