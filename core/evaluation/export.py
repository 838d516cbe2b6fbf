"""`medcls export`: the model with its output activation as ONNX or TorchScript, a JSON of everything a
consumer needs (preprocessing, classes, thresholds), and a parity check against PyTorch."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from core.evaluation import outputs
from core.evaluation import thresholds as thr
from core.evaluation.decision import describe
from core.evaluation.predict import run_thresholds
from core.evaluation.run_model import RunModel, RunModelError, to_probabilities

FORMATS = ("onnx", "torchscript")
MODEL_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript")}
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
    out, sidecar = export_paths(rm.run_dir, fmt, out)
    wrapper = ProbabilityModel(rm.model.float().cpu().eval(), rm.multi_label).eval()
    example = torch.randn(2, 3, rm.img_size, rm.img_size)
    check = torch.randn(3, 3, rm.img_size, rm.img_size)  # another batch size: proves the batch is dynamic
    with torch.no_grad(), warnings.catch_warnings():
        # torch's own deprecation notes for jit/onnx are not the user's to act on; they hid the result line
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = wrapper(check)
        if fmt == "onnx":
            data, got = _export_onnx(wrapper, example, check)
        else:  # serialised in memory: a failed C++ file write (full disk, /dev/full) aborts the process
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(wrapper, example), buffer)
            data = buffer.getvalue()
            got = torch.jit.load(io.BytesIO(data)).eval()(check)
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
    outputs.write_bytes(out, data, "--out")
    outputs.write_bytes(sidecar, json.dumps(meta, indent=2).encode("utf-8"), "--out")
    meta["path"], meta["metadata"] = str(out), str(sidecar)
    return meta


def export_paths(run_dir: Path, fmt: str, out: Optional[Path] = None) -> tuple[Path, Path]:
    """(model file, metadata JSON): <run>/export/model.onnx|.pt by default, the JSON always named
    <model file>.json, so the two formats never share one and the JSON can never be the model."""
    suffixes = MODEL_SUFFIXES[fmt]
    if out is None:
        out = Path(run_dir) / "export" / f"model{suffixes[0]}"
    out = outputs.check_file(Path(out), "--out", run_dir, suffixes)
    sidecar = outputs.check_file(out.with_name(out.name + ".json"), "--out (metadata)", run_dir)
    outputs.distinct([out, sidecar], "--out")
    return out, sidecar


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, check: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunModelError(f"export --format onnx needs onnx and onnxruntime, an optional extra: {EXPORT_HINT}") from None
    buffer = io.BytesIO()
    torch.onnx.export(wrapper, (example,), buffer, input_names=["image"], output_names=["probabilities"],
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    data = buffer.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, torch.from_numpy(session.run(None, {"image": check.numpy()})[0])
