"""System monitor of a run: is the GPU busy, or waiting for data?

GPU utilisation and memory come from NVML (the card as a whole, as nvidia-smi shows it), CPU %
and RSS of the run from /proc (CPU % counts the loader workers too, 100 = one core), and the
loader wait from host time around `next(loader)`: the step time left over is compute (a GPU-bound
step blocks the host at the step's one loss read, so no extra device sync is needed to tell them
apart). Per step only a clock read is made; the syscalls and NVML calls happen once per
SAMPLE_INTERVAL_S, when a live sample is due, and once at the epoch end.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Iterator, Optional

from core.events import SystemStats

SAMPLE_INTERVAL_S = 1.5
"""Least time between two live samples (the TUI redraws a few times a second anyway)."""
STARVED_FRACTION = 0.5
"""Loader wait above this share of the step time: the device idles waiting for batches."""
GIB = 2**30
CLOCK: Callable[[], float] = time.perf_counter
"""The monitor's clock (tests swap in a scripted one)."""


def gpu_index_of(device) -> Optional[int]:
    """cuda:N -> N (as torch indexes it), None off the GPU."""
    if getattr(device, "type", str(device)) != "cuda":
        return None
    return device.index or 0


class NvmlReader:
    """Utilisation and memory of one GPU (torch's index, CUDA_VISIBLE_DEVICES honoured) via NVML.

    Initialised once for the run; any NVML failure turns it off (the fields then stay None)."""

    def __init__(self, index: Optional[int]):
        self.handle = None
        self._nvml = None
        if index is None:
            return
        try:
            import pynvml

            from core.hardware.gpu_memory import _only_visible

            pynvml.nvmlInit()
            self._nvml = pynvml
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            visible = _only_visible(pynvml, handles)
            self.handle = visible[index] if index < len(visible) else None
        except Exception:  # noqa: BLE001 - no driver, no library, no such card: no GPU fields
            self.close()

    def read(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        """(utilisation %, used GiB, total GiB), or Nones."""
        if self.handle is None:
            return None, None, None
        try:
            util = self._nvml.nvmlDeviceGetUtilizationRates(self.handle)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(self.handle)
            return float(util.gpu), mem.used / GIB, mem.total / GIB
        except Exception:  # noqa: BLE001 - e.g. the GPU fell off the bus: stop asking
            self.close()
            return None, None, None

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
        self._nvml, self.handle = None, None


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def _children(pid: int) -> list[int]:
    """Direct child processes (the loader workers), from /proc; [] where that is not available."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                found.extend(int(p) for p in fh.read().split())
    except (OSError, ValueError):
        pass
    return found


def _proc_cpu_s(pid: int, ticks: int) -> float:
    """utime + stime of a process in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # fields 14 and 15 of proc(5)
    except (OSError, ValueError, IndexError):
        return 0.0


def process_cpu_s() -> float:
    """CPU seconds used so far by this process and its live children (loader workers)."""
    own = os.times()
    total = own.user + own.system
    ticks = _clock_ticks()
    for child in _children(os.getpid()):
        total += _proc_cpu_s(child, ticks)
    return total


def process_rss_gib() -> Optional[float]:
    """Resident memory of this process now (/proc), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / GIB if sys.platform == "darwin" else peak * 1024 / GIB
    except (ImportError, OSError):
        return None


class _Window:
    """Loader wait and step count since a start time, with the CPU seconds used then."""

    def __init__(self, now: float, cpu_s: float):
        self.start, self.cpu_s = now, cpu_s
        self.wait_s = 0.0
        self.steps = 0
        self.last_step = now


class SystemMonitor:
    """Called by the engine: `timed(loader)` per epoch, `step_done()` per step, `epoch_done()` at the end.

    `step_done` returns a live SystemStats when SAMPLE_INTERVAL_S has passed since the last one, else None."""

    def __init__(self, device, clock: Optional[Callable[[], float]] = None):
        self.clock = clock or CLOCK
        self.gpu = NvmlReader(gpu_index_of(device))
        self.on_gpu = gpu_index_of(device) is not None
        now = self.clock()
        self._epoch = _Window(now, process_cpu_s())
        self._live = _Window(now, self._epoch.cpu_s)
        self._util: list[float] = []
        self._mem_peak: Optional[float] = None

    def begin_epoch(self) -> None:
        now, cpu = self.clock(), process_cpu_s()
        self._epoch, self._live = _Window(now, cpu), _Window(now, cpu)
        self._util, self._mem_peak = [], None

    def timed(self, batches: Iterable) -> Iterator:
        """Yield from `batches`, adding the host time spent in each `next()` to the loader wait."""
        iterator = iter(batches)
        clock = self.clock
        while True:
            t0 = clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            waited = clock() - t0
            self._epoch.wait_s += waited
            self._live.wait_s += waited
            yield item

    def step_done(self, epoch: int) -> Optional[SystemStats]:
        now = self.clock()
        for window in (self._epoch, self._live):
            window.steps += 1
            window.last_step = now
        if now - self._live.start < SAMPLE_INTERVAL_S:
            return None
        stats = self._stats(self._live, epoch, "live", now)
        self._live = _Window(now, process_cpu_s())
        return stats

    def epoch_done(self, epoch: int) -> SystemStats:
        """The epoch's figures (steps only: called before validation): logged in metrics.jsonl."""
        stats = self._stats(self._epoch, epoch, "epoch", self._epoch.last_step)
        if self._util:
            stats = _replace(stats, gpu_util_pct=sum(self._util) / len(self._util), gpu_mem_used_gib=self._mem_peak)
        return stats

    def _stats(self, window: _Window, epoch: int, scope: str, end: float) -> SystemStats:
        util, used, total = self.gpu.read()
        if util is not None:
            self._util.append(util)
            self._mem_peak = max(self._mem_peak or 0.0, used)
        wall = max(end - window.start, 1e-9)
        cpu_now = process_cpu_s()
        steps = max(window.steps, 1)
        wait_frac = min(1.0, window.wait_s / wall)
        return SystemStats(
            epoch=epoch, scope=scope, steps=window.steps,
            cpu_pct=max(0.0, 100.0 * (cpu_now - window.cpu_s) / max(self.clock() - window.start, 1e-9)),
            rss_gib=process_rss_gib(), gpu_util_pct=util, gpu_mem_used_gib=used, gpu_mem_total_gib=total,
            loader_wait_s=window.wait_s / steps, step_s=wall / steps, loader_wait_frac=wait_frac,
            starved=wait_frac > STARVED_FRACTION, on_gpu=self.on_gpu)

    def close(self) -> None:
        self.gpu.close()


def _replace(stats: SystemStats, **changes) -> SystemStats:
    from dataclasses import replace

    return replace(stats, **changes)
