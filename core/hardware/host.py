"""What machine are we on: the device to train on and how much GPU memory it has.

Kept tiny and import-light; the batch-size advisor (core/hardware/advisor.py) has the full picture
(every GPU via NVML, other processes' usage, CPU RAM).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch


def pick_device(requested: str = "auto") -> "torch.device":
    """auto -> cuda if available else cpu; an explicit cuda request without a GPU is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: '{requested}' requested but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(requested)


def usable_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's share, not the host's count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CARD_SIZES_GB = (4, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 128, 141, 180, 192)
"""Marketed GPU memory sizes: the spec's batch table is written in these."""


def nominal_gib(total_gib: float) -> float:
    """Marketed card size for a reported total (a '16 GB' T4 reports 15.0 GiB, a '24 GB' L4 22.5)."""
    for size in CARD_SIZES_GB:
        if 0.9 * size <= total_gib <= size + 0.05:
            return float(size)
    return total_gib


def gpu_total_memory_gib(device: str = "auto") -> Optional[float]:
    """Total memory of the training GPU in GiB, or None without a GPU (tips then use CPU values).
    Reported totals are a little under the card's size; use nominal_gib() to look up the tips.

    Without torch loaded yet (showing a config, the app's picker) NVML answers, so those need not
    import torch; torch answers when NVML cannot (no NVML library but a driver, or an NVML error)."""
    if device == "cpu":
        return None
    if "torch" not in sys.modules:
        answered, total = _nvml_total_gib(device)
        if answered:
            return total
    import torch

    if not torch.cuda.is_available():
        return None
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    return torch.cuda.get_device_properties(index).total_memory / 2**30


def _nvml_total_gib(device: str) -> tuple[bool, Optional[float]]:
    """(answered, total GiB of the GPU `device` would use) from NVML, honouring CUDA_VISIBLE_DEVICES.

    A missing NVML library means no NVIDIA driver, hence no CUDA GPU: answered, None. Any other NVML
    failure is not an answer (the caller asks torch).
    """
    try:
        import pynvml  # noqa: F401 - nvidia-ml-py
    except ImportError:
        return False, None
    from core.hardware.gpu_memory import _nvml_gpus, no_nvidia_driver, training_gpu

    try:
        gpus = _nvml_gpus()
    except Exception as err:  # noqa: BLE001 - driver mismatch & co.: let torch decide
        return (True, None) if no_nvidia_driver(err) else (False, None)
    if not gpus:
        return False, None  # NVML sees no (visible) card: let torch confirm
    gpu = training_gpu(type("Hw", (), {"gpus": gpus})(), device)
    return True, None if gpu is None else gpu.total_gib
