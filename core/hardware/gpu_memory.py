"""Read the machine's memory: every GPU (NVML, else torch), else CPU RAM.

NVML comes first because it sees the whole card, including memory held by *other* processes,
without creating a CUDA context in this one; torch.cuda.mem_get_info is the fallback when the
NVML library is missing. Without a GPU the CPU's RAM is the budget. The advisor plans with
`usable_gib` = total minus what other processes hold, because that memory is not ours to use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

GIB = 2**30


@dataclass
class GpuInfo:
    """One GPU as this process would index it (cuda:<index>)."""

    index: int
    name: str
    total_gib: float
    free_gib: float
    used_gib: float
    used_by_other_processes_gib: float

    @property
    def usable_gib(self) -> float:
        """What a run here may plan with: total minus other processes' memory."""
        return max(0.0, self.total_gib - self.used_by_other_processes_gib)


@dataclass
class HardwareInfo:
    gpus: list[GpuInfo] = field(default_factory=list)
    cpu_ram_total_gib: Optional[float] = None
    cpu_ram_free_gib: Optional[float] = None
    source: str = "cpu"
    """'nvml', 'torch' or 'cpu' (no GPU: RAM is the budget)."""

    def gpu(self, device: str = "auto") -> Optional[GpuInfo]:
        """The GPU a run with this `device` setting trains on, or None for CPU."""
        return training_gpu(self, device)


def training_gpu(hardware, device: str = "auto"):
    """The GPU a run with `device` uses (cuda:N -> index N), or None for CPU. Duck-typed on purpose:
    the TUI may hand over its own hardware view with the same fields."""
    gpus = list(getattr(hardware, "gpus", None) or [])
    if device == "cpu" or not gpus:
        return None
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    return next((g for g in gpus if getattr(g, "index", None) == index), gpus[0])


def read_hardware() -> HardwareInfo:
    """NVML, then torch.cuda, then no GPU; CPU RAM is always filled in."""
    total, free = cpu_ram_gib()
    for source, reader in (("nvml", _nvml_gpus), ("torch", _torch_gpus)):
        try:
            gpus = reader()
        except Exception as err:  # noqa: BLE001 - any failure of a reader means: try the next one
            if no_nvidia_driver(err):
                break  # no NVML library = no NVIDIA driver: torch.cuda would find no GPU either (and costs seconds)
            gpus = []
        if gpus:
            return HardwareInfo(gpus=gpus, cpu_ram_total_gib=total, cpu_ram_free_gib=free, source=source)
    return HardwareInfo(gpus=[], cpu_ram_total_gib=total, cpu_ram_free_gib=free, source="cpu")


def no_nvidia_driver(err: BaseException) -> bool:
    """NVML's "library not found": the NVIDIA driver (which ships libnvidia-ml with libcuda) is absent."""
    return type(err).__name__ == "NVMLError_LibraryNotFound"


def cpu_ram_gib() -> tuple[Optional[float], Optional[float]]:
    """(total, available) RAM in GiB from /proc/meminfo (MemAvailable), else os.sysconf."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024 / GIB
        if "MemTotal" in info:
            return info["MemTotal"], info.get("MemAvailable", info.get("MemFree"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES") / GIB
        try:
            free = page * os.sysconf("SC_AVPHYS_PAGES") / GIB
        except (ValueError, OSError):
            free = None
        return total, free
    except (ValueError, OSError, AttributeError):
        return None, None


def visible_devices() -> Optional[list[str]]:
    """CUDA_VISIBLE_DEVICES as a list (None = unset): NVML lists every card, torch only these."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpus() -> list[GpuInfo]:
    import pynvml

    pynvml.nvmlInit()
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        handles = _only_visible(pynvml, handles)
        return [_nvml_gpu(pynvml, i, h) for i, h in enumerate(handles)]
    finally:
        pynvml.nvmlShutdown()


def _only_visible(pynvml, handles: list) -> list:
    """Apply CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUID prefixes) so indices match cuda:N."""
    wanted = visible_devices()
    if wanted is None:
        return handles
    picked = []
    for item in wanted:
        if item.lstrip("-").isdigit():
            i = int(item)
            if i < 0 or i >= len(handles):
                break  # CUDA stops at the first invalid entry
            picked.append(handles[i])
            continue
        match = [h for h in handles if _text(pynvml.nvmlDeviceGetUUID(h)).startswith(item)]
        if not match:
            break
        picked.append(match[0])
    return picked


def _nvml_gpu(pynvml, index: int, handle) -> GpuInfo:
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    procs = []
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            procs.extend(getattr(pynvml, getter)(handle))
        except Exception:  # noqa: BLE001 - not supported on every driver/GPU
            pass
    me = os.getpid()
    known = [p for p in procs if getattr(p, "usedGpuMemory", None) is not None]
    others = sum(p.usedGpuMemory for p in known if p.pid != me)
    mine = sum(p.usedGpuMemory for p in known if p.pid == me)
    if procs and len(known) == len(procs):
        used_by_others = others
    else:
        # Per-process numbers hidden (containers, some drivers): all used memory that is not ours.
        used_by_others = max(0, mem.used - mine)
    return GpuInfo(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)), total_gib=mem.total / GIB,
                   free_gib=mem.free / GIB, used_gib=mem.used / GIB,
                   used_by_other_processes_gib=min(used_by_others, mem.total) / GIB)


def _torch_gpus() -> list[GpuInfo]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        used = total - free
        # Without NVML only our own pool is known; the rest of `used` (incl. our CUDA context) counts as others'.
        mine = torch.cuda.memory_reserved(i)
        gpus.append(GpuInfo(index=i, name=torch.cuda.get_device_name(i), total_gib=total / GIB,
                            free_gib=free / GIB, used_gib=used / GIB,
                            used_by_other_processes_gib=max(0, used - mine) / GIB))
    return gpus
