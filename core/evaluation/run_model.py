"""A finished run's model, rebuilt from its folder: config.yaml + a checkpoint + what the run logged.

Everything after training (eval, predict, export, explain) starts here, so the model, its class
names, its input size and normalisation are read one way only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from core.runs import folder as runs
from core.runs.checkpoint import load_checkpoint
from core.config import TrainConfig, load_yaml_file
from core.models.pretrained import strip_wrapper_prefixes
from core.models.build import Classifier, build_model, model_family, resolve_model_name
from core.training.precision import autocast

CHECKPOINTS = ("best", "last")
RUN_PREFIXES = ("_orig_mod.", "module.")
"""torch.compile / DataParallel wrappers a saved state dict may carry, in any order (never `backbone.`: ours)."""
META_KEYS = ("name", "description", "notes", "group", "tags")
ProgressFn = Callable[[int, int, str], None]


class RunModelError(ValueError):
    """The run folder cannot give a model (missing checkpoint, unreadable config); one clear line."""


@dataclass
class RunModel:
    run_dir: Path
    config: TrainConfig
    model: Classifier
    classes: list[str]
    multi_label: bool
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    family: str
    checkpoint: str
    device: torch.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,1,H,W) -> normalised float (B,3,H,W), exactly as training fed the model."""
        return normalize(images.to(self.device), self.mean, self.std)

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        """Validation's autocast dtype for this run on this device (None: float32)."""
        from core.training.precision import autocast_dtype

        return autocast_dtype(bool(self.config.mixed_precision), self.config.amp_dtype, self.device)

    def preprocessing(self) -> dict:
        """What a consumer of an exported model must do to an image first."""
        return {"size": [self.img_size, self.img_size], "resize": "squash (bilinear, antialiased, full field of view)",
                "grayscale": "decode to 8-bit gray, scale to [0, 1], repeat to 3 channels",
                "mean": list(self.mean), "std": list(self.std), "layout": "NCHW float32"}


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    x = images.float().div(255.0).expand(-1, len(mean), -1, -1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def read_run_config(run_dir: Path) -> TrainConfig:
    from pydantic import ValidationError

    data = load_yaml_file(Path(run_dir) / runs.CONFIG_FILE) or {}
    values = {k: v for k, v in data.items() if k not in META_KEYS}
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()))
        raise RunModelError(f"{Path(run_dir) / runs.CONFIG_FILE}: {key}: {first.get('msg')}") from None


def run_started_record(run_dir: Path) -> dict:
    """The RunStarted event the engine logged (classes and multi_label), newest first."""
    for record in reversed(runs.read_metrics(run_dir)):
        if record.get("event") == "RunStarted":
            return record
    return {}


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which not in CHECKPOINTS:
        raise RunModelError(f"checkpoint: '{which}' is not one of {', '.join(CHECKPOINTS)}")
    path = Path(run_dir) / runs.CHECKPOINT_DIR / f"{which}.pt"
    if not path.is_file():
        other = [c for c in CHECKPOINTS if (Path(run_dir) / runs.CHECKPOINT_DIR / f"{c}.pt").is_file()]
        hint = f" (this run has: {', '.join(other)})" if other else " (this run saved no checkpoint)"
        raise RunModelError(f"checkpoint: {path} not found{hint}")
    return path


def resolve_device(requested: str | torch.device) -> torch.device:
    """The --device check train uses (auto, cpu, cuda, cuda:N; a GPU must exist), as one RunModelError line."""
    from core.config import ConfigError, validate_layer
    from core.hardware.host import pick_device

    if isinstance(requested, torch.device):
        return requested
    try:
        value = validate_layer({"device": requested}, "--device")["device"].strip().lower()
        device = pick_device(value)
    except (ConfigError, RuntimeError) as err:
        raise RunModelError(str(err).replace("--device: device:", "--device:")) from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunModelError(f"--device: '{requested}' but this machine has {torch.cuda.device_count()} GPU(s) "
                            "(cuda:0 to cuda:N-1)")
    return device


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's dict with a 'model' state dict; anything else (empty, truncated, garbage, another
    program's pickle) is one RunModelError line naming the file, never a torch traceback."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles on stderr; the error line says it
            warnings.simplefilter("ignore")
            state = load_checkpoint(path)
    except pickle.UnpicklingError:
        raise RunModelError(f"{path}: not a medcls checkpoint (garbage, or a pickle that would run code: "
                            "refused)") from None
    except Exception as err:  # noqa: BLE001 - torch.load raises many types for a broken file
        empty = path.is_file() and path.stat().st_size == 0
        reason = "empty file (0 bytes)" if empty else f"truncated or corrupt: {type(err).__name__}"
        raise RunModelError(f"{path}: not a readable medcls checkpoint ({reason})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise RunModelError(f"{path}: not a medcls checkpoint (expected a dict with a 'model' state dict)")
    return state


def fit_weights(model: nn.Module, weights: dict, path: Path, what: str) -> None:
    """load_state_dict, with a mismatch (another model or class count) as one line naming both files."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        text = str(err)
        kinds = [k for k in ("Missing key", "Unexpected key", "size mismatch") if k in text]
        raise RunModelError(f"{path}: its weights do not fit {what}: "
                            f"{', '.join(kinds).lower() or 'incompatible tensors'}; was the checkpoint "
                            "or config.yaml replaced?") from None


def find_run(run: str, output_dir: str = "runs") -> Path:
    """A run folder path or a run name under output_dir."""
    try:
        return runs.find_run_dir(run, output_dir)
    except runs.RunError as err:
        raise RunModelError(str(err).replace("retrain: ", "run: ")) from None


def load_run_model(run_dir: Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> RunModel:
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg = read_run_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    state = read_checkpoint(path)
    started = run_started_record(run_dir)
    classes = list(state.get("classes") or started.get("classes") or [])
    if not classes or not all(isinstance(c, str) for c in classes):
        raise RunModelError(f"{path}: the checkpoint names no classes (expected a list of class names)")
    multi_label = bool(started["multi_label"]) if "multi_label" in started else bool(cfg.multi_label)
    timm_name = resolve_model_name(cfg.model)
    img_size = int(cfg.img_size or 224)
    model = build_model(timm_name, len(classes), cfg.mode, img_size=img_size, pretrained_path=None)
    fit_weights(model, strip_wrapper_prefixes(state["model"], RUN_PREFIXES), path,
                f"model '{cfg.model}' with {len(classes)} classes ({run_dir / runs.CONFIG_FILE})")
    model.to(dev).eval()
    pcfg = getattr(model.backbone, "pretrained_cfg", {}) or {}
    return RunModel(run_dir=run_dir, config=cfg, model=model, classes=classes, multi_label=multi_label,
                    img_size=img_size, mean=tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),
                    std=tuple(pcfg.get("std", (0.229, 0.224, 0.225))), family=model_family(timm_name),
                    checkpoint=checkpoint, device=dev)


def to_probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


@torch.no_grad()
def predict_images(model: nn.Module, normalize_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                   multi_label: bool, views: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
                   amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Probabilities for a uint8 (B,1,H,W) batch; with TTA views (core.evaluation.tta) their mean."""
    def run(batch: torch.Tensor) -> torch.Tensor:
        x = normalize_fn(batch)
        with autocast(x.device, amp_dtype):
            logits = model(x)
        return to_probabilities(logits, multi_label)

    probs = run(images)
    for view in views:
        probs = probs + run(view(images))
    return (probs / (1 + len(views))).cpu()


@torch.no_grad()
def predict_table(model: nn.Module, normalize_fn, table, multi_label: bool, batch_size: int = 64,
                  num_workers: int = 0, pin_memory: bool = False, progress: Optional[ProgressFn] = None,
                  description: str = "scoring", amp_dtype: Optional[torch.dtype] = None) -> np.ndarray:
    """(N, C) probabilities over a whole split, in table order."""
    from core.training.loader import TableDataset, epoch_batches, make_loader

    was_training = model.training
    model.eval()
    dataset = TableDataset(table, None, 0)
    batches = epoch_batches(len(dataset), batch_size, 0, 0, shuffle=False, drop_last=False)
    out, done = [], 0
    for images, _, _ in make_loader(dataset, batches, num_workers, pin_memory):
        out.append(predict_images(model, normalize_fn, images, multi_label, amp_dtype=amp_dtype).numpy())
        done += len(images)
        if progress is not None:
            progress(done, len(dataset), description)
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))
