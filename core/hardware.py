"""What machine are we on: the device to train on and how much GPU memory it has.

Kept tiny and import-light; the batch-size advisor (core/advisor.py) has the full picture
(every GPU via NVML, other processes' usage, CPU RAM).
"""
from __future__ import annotations

from typing import Optional

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """auto -> cuda if available else cpu; an explicit cuda request without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: '{requested}' requested but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(requested)


def gpu_total_memory_gib(device: str = "auto") -> Optional[float]:
    """Total memory of the training GPU in GiB, or None without a GPU (tips then use CPU values)."""
    if device == "cpu" or not torch.cuda.is_available():
        return None
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    return torch.cuda.get_device_properties(index).total_memory / 2**30
