"""The advisor's data for the UI: hardware, table advice and the measured probe.

Uses core/advisor.py (read_hardware, table_advice, probe_batch_size) when it is there. Until
then it falls back to the spec's batch-size table in core/tips.py and to torch/proc for the
hardware, returning objects with the same field names, so the screen code does not care.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class GpuView:
    index: int
    name: str
    total_gib: float
    free_gib: Optional[float] = None


@dataclass
class HardwareView:
    gpus: list = field(default_factory=list)
    cpu_ram_total_gib: Optional[float] = None
    cpu_ram_free_gib: Optional[float] = None
    source: str = "none"


@dataclass
class AdviceView:
    batch_low: int
    batch_high: int
    suggested_batch: int
    grad_accum_steps: int
    effective_batch: int
    reasons: list = field(default_factory=list)
    source: str = "table"
    """'core.advisor' when the advisor module gave it, 'table' for the core.tips fallback."""


def _advisor_module():
    try:
        from core import advisor  # noqa: PLC0415 - optional until the advisor issue lands
    except ImportError:
        return None
    return advisor


def probe_available() -> bool:
    mod = _advisor_module()
    return mod is not None and hasattr(mod, "probe_batch_size")


def read_hardware() -> Any:
    """core.advisor.read_hardware(), else torch.cuda + /proc/meminfo."""
    mod = _advisor_module()
    if mod is not None and hasattr(mod, "read_hardware"):
        return mod.read_hardware()
    gpus = []
    source = "none"
    try:
        import torch

        if torch.cuda.is_available():
            source = "torch"
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                free = None
                try:
                    free = torch.cuda.mem_get_info(i)[0] / 2**30
                except Exception:  # noqa: BLE001
                    pass
                gpus.append(GpuView(index=i, name=props.name, total_gib=props.total_memory / 2**30, free_gib=free))
    except ImportError:
        pass
    total, free = _ram_gib()
    return HardwareView(gpus=gpus, cpu_ram_total_gib=total, cpu_ram_free_gib=free, source=source)


def _ram_gib() -> tuple[Optional[float], Optional[float]]:
    try:
        info = {}
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) / 2**20
        return info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
            return total, None
        except (ValueError, OSError, AttributeError):
            return None, None


def training_vram_gib(hardware: Any, device: str = "auto") -> Optional[float]:
    """Total memory of the GPU a run would use (None = CPU)."""
    gpus = list(getattr(hardware, "gpus", []) or [])
    if not gpus or device == "cpu":
        return None
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    for gpu in gpus:
        if getattr(gpu, "index", None) == index:
            return float(gpu.total_gib)
    return float(gpus[0].total_gib)


def table_advice(config: Any, hardware: Any) -> Any:
    """Batch range, suggested batch and accumulation for config's model/mode/img size on this hardware."""
    mod = _advisor_module()
    if mod is not None and hasattr(mod, "table_advice"):
        advice = mod.table_advice(config.model, config.mode, config.img_size, config.mixed_precision,
                                  hardware=hardware)
        try:
            advice.source = "core.advisor"
        except (AttributeError, TypeError):  # frozen dataclass: fine, the screen reads getattr(..., "source")
            pass
        return advice
    from core import tips
    from core.models import resolve_model_name

    vram = training_vram_gib(hardware, config.device)
    low, high, range_reason = tips.batch_range_for_vram(vram, config.mode)
    tip = tips.batch_tip(vram, config.mode, resolve_model_name(config.model), config.dataset)
    suggested = int(tip.value)
    reasons = [tip.reason] if tip.reason.startswith(range_reason) else [range_reason, tip.reason]
    accum = 1
    wanted = config.batch_size if isinstance(config.batch_size, int) else None
    if wanted and wanted > suggested:
        accum = math.ceil(wanted / suggested)
        reasons.append(f"keep the effective batch of {wanted}: {suggested} x {accum} accumulation steps "
                       "(spec: effective batch = batch_size x accumulation_steps)")
    return AdviceView(batch_low=low, batch_high=high, suggested_batch=suggested, grad_accum_steps=accum,
                      effective_batch=suggested * accum, reasons=reasons, source="table")


def run_probe(config: Any, time_budget_s: float = 60.0) -> Any:
    """The measured probe (core.advisor.probe_batch_size); raises RuntimeError when unavailable."""
    mod = _advisor_module()
    if mod is None or not hasattr(mod, "probe_batch_size"):
        raise RuntimeError("the measured probe (core/advisor.py) is not available in this build; "
                           "showing the spec's table advice")
    return mod.probe_batch_size(config, time_budget_s=time_budget_s)


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
