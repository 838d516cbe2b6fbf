"""`medcls export`: the model with its output activation as ONNX or TorchScript, a JSON of everything a
consumer needs (preprocessing, classes, thresholds), and a parity check against PyTorch."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import thresholds as thr
from .decision import describe
from .predict import run_thresholds
from .run_model import RunModel, RunModelError, to_probabilities

FORMATS = ("onnx", "torchscript")
PARITY_TOLERANCE = 1e-3
"""Largest probability difference between the exported model and PyTorch that passes (exit 1 above)."""
EXPORT_HINT = "uv sync --extra export (or pip install 'medcls[export]')"


class ProbabilityModel(nn.Module):
    """Normalised image batch -> class probabilities (sigmoid or softmax as in training)."""

    def __init__(self, model: nn.Module, multi_label: bool):
        super().__init__()
        self.model = model
        self.multi_label = multi_label

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return to_probabilities(self.model(image), self.multi_label)


def export_run(rm: RunModel, fmt: str, out: Optional[Path] = None) -> dict:
    """Write the model and its JSON; returns the JSON content (with the parity figure)."""
    if fmt not in FORMATS:
        raise RunModelError(f"format: '{fmt}' is not one of {', '.join(FORMATS)}")
    stored = run_thresholds(rm)  # thresholds of other weights are refused before anything is written
    out = Path(out) if out else rm.run_dir / "export" / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ProbabilityModel(rm.model.float().cpu().eval(), rm.multi_label).eval()
    example = torch.randn(2, 3, rm.img_size, rm.img_size)
    check = torch.randn(3, 3, rm.img_size, rm.img_size)  # another batch size: proves the batch is dynamic
    with torch.no_grad():
        expected = wrapper(check)
        if fmt == "onnx":
            got = _export_onnx(wrapper, example, out, check)
        else:
            traced = torch.jit.trace(wrapper, example)
            traced.save(str(out))
            got = torch.jit.load(str(out)).eval()(check)
    diff = float((expected - torch.as_tensor(got)).abs().max())
    values = thr.as_list(stored, rm.classes)
    meta = {
        "format": fmt, "file": out.name, "run": rm.run_dir.name, "checkpoint": rm.checkpoint,
        "model": rm.config.model, "input": {"name": "image", "shape": ["batch", 3, rm.img_size, rm.img_size],
                                            **rm.preprocessing()},
        "output": {"name": "probabilities", "shape": ["batch", len(rm.classes)],
                   "activation": "sigmoid (independent per class)" if rm.multi_label else "softmax"},
        "classes": rm.classes, "multi_label": rm.multi_label,
        "thresholds": stored["thresholds"] if stored else None,
        "threshold_method": stored["method"] if stored else None,
        "thresholds_checkpoint_digest": stored.get("digest") if stored else None,
        "decision": describe(rm.classes, rm.multi_label, values),  # the rule predict and eval apply
        "parity_max_abs_diff": diff, "parity_tolerance": PARITY_TOLERANCE, "parity_ok": diff <= PARITY_TOLERANCE,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    meta["path"] = str(out)
    return meta


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, out: Path, check: torch.Tensor):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunModelError(f"export --format onnx needs onnx and onnxruntime, an optional extra: {EXPORT_HINT}") from None
    torch.onnx.export(wrapper, (example,), str(out), input_names=["image"], output_names=["probabilities"],
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"image": check.numpy()})[0])
