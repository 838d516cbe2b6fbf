"""Atomic checkpoints with everything exact resume needs, loaded with weights_only=True."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch (and CUDA) as plain tensors/lists (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


SPACE_MARGIN = 16 * 2**20
"""Bytes kept free beyond the checkpoint itself (the summary and metrics still need to fit)."""


class CheckpointSpaceError(RuntimeError):
    """The checkpoint could not be written (full disk); the previous one is still in place."""


def estimated_size(obj: Any) -> int:
    """Bytes of every tensor in a (nested) checkpoint dict: what torch.save will roughly write."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(estimated_size(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(estimated_size(v) for v in obj)
    return 64


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temp file in the same folder, then rename: a crash never leaves half a checkpoint.

    Free space is checked first, and a failed write (ENOSPC, EFBIG) removes its temp file and
    raises CheckpointSpaceError with one line, so the previous checkpoint stays the valid one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    need = estimated_size(obj) + SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise CheckpointSpaceError(f"checkpoint {path.name}: {path.parent} has {free / 2**20:.0f} MiB free, "
                                   f"about {need / 2**20:.0f} MiB needed; the previous checkpoint is kept "
                                   "(free space, or use another --output_dir, then --retrain)")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a short write as RuntimeError ("unexpected pos")
        try:
            os.unlink(tmp)
        except OSError:
            pass
        # torch.save reports a failed file write as a RuntimeError from its C++ zip writer (e.g.
        # "basic_ios::clear: iostream error", then "unexpected pos"); what the object holds was already
        # serialisable, so any error here is the write itself.
        reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0][:160]
        free_now = shutil.disk_usage(path.parent).free
        reason = f"{reason}; {free_now / 2**20:.1f} MiB free"
        raise CheckpointSpaceError(f"checkpoint {path.name}: writing to {path.parent} failed ({reason}); "
                                   "the previous checkpoint is kept") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)
