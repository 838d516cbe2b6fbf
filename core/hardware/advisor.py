"""Batch-size advisor: what the GPU has, what the tips say, what actually fits, what to change.

One import for the CLI (`medcls advise`), the TUI's advisor panel and the engine
(`--batch_size auto`); the parts live in small modules:
  * core/hardware/gpu_memory.py   read_hardware(): every GPU via NVML (torch.cuda fallback), else CPU RAM;
  * core/hardware/advice_table.py table_advice(), model_advice(): the spec's table, scaled, no measuring;
  * core/hardware/batch_probe.py  probe_batch_size(): real steps, growing then bisected batch, margin;
  * core/hardware/probe_bench.py  one measured trial (how memory is counted on CUDA and on CPU).
"""
from __future__ import annotations

from core.hardware.advice_table import Advice, model_advice, nominal_gib, table_advice
from core.hardware.batch_probe import ProbeResult, probe_batch_size
from core.hardware.gpu_memory import GpuInfo, HardwareInfo, cpu_ram_gib, read_hardware

__all__ = ["Advice", "GpuInfo", "HardwareInfo", "ProbeResult", "cpu_ram_gib", "model_advice", "nominal_gib",
           "probe_batch_size", "read_hardware", "table_advice"]
