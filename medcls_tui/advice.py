"""The advisor's data for the UI: thin calls into core/hardware/advisor.py, plus the lines the screen prints.

Imports are deferred to the calls: core.hardware.advisor pulls in torch, and the app should draw its first
screen before that is loaded.
"""
from __future__ import annotations

from typing import Any, Optional


def read_hardware() -> Any:
    """Every GPU (NVML, else torch) and the CPU's RAM: core.hardware.gpu_memory.read_hardware()."""
    from core.hardware.gpu_memory import read_hardware as read  # core.hardware.advisor would import torch

    return read()


def training_vram_gib(hardware: Any, device: str = "auto") -> Optional[float]:
    """Card size (GB class) of the GPU a run would use, as the tips' batch table reads it; None = CPU."""
    from core.hardware.gpu_memory import training_gpu
    from core.hardware.host import nominal_gib

    gpu = training_gpu(hardware, device)
    return None if gpu is None else nominal_gib(float(gpu.total_gib))


def table_advice(config: Any, hardware: Any) -> Any:
    """Batch range, suggested batch and accumulation for config's model/mode/img size on this hardware."""
    from core.hardware.advisor import table_advice as advise

    return advise(config.model, config.mode, config.img_size, config.mixed_precision, hardware=hardware,
                  device=config.device, grad_checkpointing=bool(config.grad_checkpointing))


def run_probe(config: Any, time_budget_s: float = 60.0) -> Any:
    """The measured probe: real training steps at growing batch sizes (core.hardware.advisor.probe_batch_size)."""
    from core.hardware.advisor import probe_batch_size

    return probe_batch_size(config, time_budget_s=time_budget_s)


def gpu_line(gpu: Any) -> str:
    free = getattr(gpu, "free_gib", None)
    free_text = f", {free:.1f} GiB free" if isinstance(free, (int, float)) else ""
    return f"GPU {gpu.index}: {gpu.name} — {gpu.total_gib:.1f} GiB total{free_text}"


def ram_line(hardware: Any) -> str:
    total = getattr(hardware, "cpu_ram_total_gib", None)
    free = getattr(hardware, "cpu_ram_free_gib", None)
    if total is None:
        return "RAM: unknown"
    return f"RAM {total:.1f} GiB total" + (f", {free:.1f} GiB free" if free is not None else "")
