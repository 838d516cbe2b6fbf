"""Which autocast dtype a run uses: one rule for the engine and the batch probe.

`amp_dtype auto` takes bf16 only where the GPU computes it natively (compute capability >= 8.0,
Ampere and later, or ROCm); `torch.cuda.is_bf16_supported()` also says yes for emulated bf16 on
T4/V100, which is slow there, so those cards get fp16 with a GradScaler instead.
"""
from __future__ import annotations

import contextlib

from typing import Optional

import torch


def native_bf16(device: torch.device) -> bool:
    """True when `device` computes bf16 in hardware (not emulated)."""
    if device.type != "cuda":
        return False
    if torch.version.hip:
        return True
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


def autocast_dtype(mixed_precision: bool, amp_dtype: str, device: torch.device) -> Optional[torch.dtype]:
    """None (fp32) off CUDA or without mixed precision; else fp16 or bf16 as asked, auto by native support."""
    if not mixed_precision or device.type != "cuda":
        return None
    if amp_dtype == "fp16":
        return torch.float16
    if amp_dtype == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if native_bf16(device) else torch.float16


def autocast(device: torch.device, amp_dtype: Optional[torch.dtype]):
    """The forward's precision context: autocast to amp_dtype, or nothing (fp32). Training, validation
    and test scoring all enter it the same way, so their numbers come from the same precision."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)
