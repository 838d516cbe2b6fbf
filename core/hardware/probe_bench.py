"""One measured trial of the batch probe: real training steps of the configured run at batch b.

A trial runs the same step as the engine (strategy.training_loss under autocast, backward,
optimizer step) on random images, so everything that costs memory counts: the model at the
run's image size, AMP, gradient checkpointing, channels_last, XDomainMix's extra passes, the
optimizer state. It needs two steps: AdamW/SGD allocate their state in the first one.

How memory is measured:
  * CUDA: the trial's peak reserved memory (`torch.cuda.max_memory_reserved`, after emptying
    the cache: allocated bytes plus the fragmentation the allocator actually produced), against a
    limit of (free memory + this process's pool) x (1 - margin). Free memory already excludes
    other processes' use. The margin covers later fragmentation and neighbours that grow.
  * CPU: there is no allocator peak to read. The trial counts bytes: tensors autograd saves for
    backward (unique storages, parameters excluded, via saved_tensors_hooks), gradients,
    optimizer state, the input, plus twice the largest activation as the backward's transient
    buffers. On Linux it also measures the process's peak RSS growth over the probe's start
    (VmHWM, reset per trial through /proc/self/clear_refs) and keeps the larger of the two: the
    count alone misses allocator and oneDNN scratch memory (5-25% on ResNets). The limit is
    MemAvailable x (1 - margin), read after the model exists, so the weights are already taken.
"""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from core.training.oom import is_oom
from core.training.precision import autocast_dtype

GIB = 2**30


@dataclass
class Trial:
    batch: int
    fits: bool
    oom: bool
    peak_gib: Optional[float]
    """Measured (CUDA) or counted (CPU) peak of the trial; None after an out-of-memory error."""
    step_s: Optional[float]
    """Seconds of the last step (steady state: optimizer state already exists)."""


class GpuMeter:
    """Peak allocated bytes on one CUDA device."""

    def __init__(self, device: torch.device, margin: float):
        self.device = device
        gc.collect()
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        self.capacity = free + torch.cuda.memory_reserved(device)
        self.limit = self.capacity * (1 - margin)
        self.total = total

    def describe(self, margin: float) -> str:
        return (f"budget {self.capacity / GIB:.1f} GiB on {self.device} (free + this process's pool; other processes "
                f"excluded), limit {self.limit / GIB:.1f} GiB with a {margin:.0%} safety margin")

    def begin(self, bench) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def watch(self):
        return contextlib.nullcontext()

    def peak(self, bench, batch: int) -> int:
        """Peak *reserved* bytes: what the allocator took from the card, fragmentation included."""
        torch.cuda.synchronize(self.device)
        return max(torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device))

    def cleanup(self, oom: bool = False) -> None:
        if oom:
            gc.collect()  # slow with many Python objects alive: only when an OOM may have left cycles
        torch.cuda.empty_cache()

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)


def _proc_status_bytes(key: str) -> Optional[int]:
    """VmRSS / VmHWM of this process from /proc/self/status (None where there is no procfs)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _trim_heap() -> None:
    """glibc keeps freed memory in its arenas; give it back so a smaller trial after a bigger one
    does not inherit the bigger one's RSS. Best effort (other C libraries: no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class CpuMeter:
    """CPU memory: counted tensor bytes and, on Linux, the measured peak RSS (module docstring)."""

    def __init__(self, margin: float):
        from core.hardware.gpu_memory import cpu_ram_gib

        _, avail = cpu_ram_gib()
        self.capacity = (avail if avail is not None else 4.0) * GIB
        self.limit = self.capacity * (1 - margin)
        self.baseline = _proc_status_bytes("VmRSS")
        self.rss_peak = self.baseline is not None and _reset_peak_rss()
        self.saved: dict[int, int] = {}
        self.largest = self.max_saved = 0
        self.params: set[int] = set()
        self.model: Optional[torch.nn.Module] = None

    def describe(self, margin: float) -> str:
        how = "peak RSS growth or the counted tensors, whichever is larger" if self.rss_peak else "counted tensors"
        return (f"CPU: budget = available RAM {self.capacity / GIB:.1f} GiB, limit {self.limit / GIB:.1f} GiB with a "
                f"{margin:.0%} margin; memory per trial = {how} (activations saved for backward + gradients "
                "+ optimizer state)")

    def begin(self, bench) -> None:
        self.saved, self.largest, self.max_saved = {}, 0, 0
        if self.rss_peak:
            _reset_peak_rss()
        self.params = {p.untyped_storage().data_ptr() for p in bench.model.parameters()}
        self.model = bench.model

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return t
        key = storage.data_ptr()
        if key not in self.params:
            self.saved[key] = storage.nbytes()
        return t

    def _output(self, module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            self.largest = max(self.largest, output.numel() * output.element_size())

    @contextlib.contextmanager
    def watch(self):
        """Count this model's activations only (hooks on its modules, not global ones: the TUI may be
        training another model in another thread)."""
        handles = [m.register_forward_hook(self._output) for m in self.model.modules()]
        self.saved = {}  # per step: the previous step's activations are freed by now
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                yield
        finally:
            for h in handles:
                h.remove()
            self.max_saved = max(self.max_saved, sum(self.saved.values()))

    def peak(self, bench, batch: int) -> int:
        params = [p for p in bench.model.parameters() if p.requires_grad]
        grads = sum(p.numel() * p.element_size() for p in params)
        state = sum(v.numel() * v.element_size() for s in bench.optimizer.state.values()
                    for v in s.values() if isinstance(v, torch.Tensor))
        counted = self.max_saved + 2 * self.largest + grads + state + bench.input_bytes(batch)
        hwm = _proc_status_bytes("VmHWM") if self.rss_peak else None
        return max(counted, hwm - self.baseline) if hwm is not None else counted

    def cleanup(self, oom: bool = False) -> None:
        pass

    def sync(self) -> None:
        pass


KNOWN_CLASSES = {"nih": 14, "covidx": 3, "vinbigdata": 2}
SYNTHETIC_CLASSES = {"multiclass": 4, "multilabel": 5, "binary": 2}


def guess_task(config, model=None) -> tuple[int, bool]:
    """(classes, multi-label) without loading the dataset; a given model's head decides the classes."""
    multi = config.multi_label if config.multi_label is not None else (
        config.dataset == "nih" or (config.dataset == "synthetic" and config.synthetic_task == "multilabel"))
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] if model is not None else []
    if heads:
        return heads[-1].out_features, bool(multi)
    if config.dataset == "synthetic":
        return SYNTHETIC_CLASSES["multilabel" if multi else config.synthetic_task], bool(multi)
    return KNOWN_CLASSES.get(config.dataset, 14 if multi else 3), bool(multi)


class ProbeBench:
    """Model, loss, strategy and a zero-LR optimizer for trials on random data."""

    NUM_DOMAINS = 3  # >= 2 so XDomainMix runs its cross-domain path (the memory-hungry one)

    def __init__(self, config, model, device: torch.device, timm_name: str, family: str):
        from core.augment import build_strategy
        from core.training.losses import build_loss
        from core.models.build import build_optimizer

        self.cfg, self.model, self.device = config, model, device
        self.num_classes, self.multi_label = guess_task(config, getattr(model, "classifier", None))
        loss_cfg = config if config.loss != "auto" else config.model_copy(
            update={"loss": "bce" if self.multi_label else "ce"})
        counts = np.full(self.num_classes, 10)
        self.criterion = build_loss(loss_cfg, self.num_classes, counts, 10 * self.num_classes).to(device)
        # Worst case for memory: the augmentation runs on every batch (no prob gate, no discard).
        strat_cfg = config.model_copy(update={"mixup_prob": 1.0, "xdm_discard_prob": 0.0})
        self.strategy = build_strategy(strat_cfg, self.num_classes, self.NUM_DOMAINS, self.multi_label)
        for module in self.strategy.modules():
            module.to(device)
        self.aug_step = config.xdm_warmup_steps  # past XDomainMix's ERM warm-up
        # LR 0: the trial allocates the optimizer state like training does but moves no weight.
        self.optimizer = build_optimizer(model, config.mode, 0.0, config.weight_decay or 0.0, config.layer_decay)
        use_cuda = device.type == "cuda"
        self.channels_last = (config.channels_last if config.channels_last is not None
                              else use_cuda and family in ("cnn", "convnext"))
        self.amp_dtype = autocast_dtype(config.mixed_precision, config.amp_dtype, device)
        self.img_size = config.img_size

    def input_bytes(self, batch: int) -> int:
        return batch * 3 * self.img_size * self.img_size * 4

    def batch(self, b: int):
        x = torch.randn(b, 3, self.img_size, self.img_size, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.multi_label:
            y = (torch.rand(b, self.num_classes, device=self.device) < 0.2).float()
        else:
            y = torch.randint(0, self.num_classes, (b,), device=self.device)
        d = torch.randint(0, self.NUM_DOMAINS, (b,), device=self.device)
        return x, y, d

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_step(self, b: int, meter) -> None:
        """One engine-like step. No GradScaler: a skipped fp16 step would never allocate the optimizer state."""
        self.optimizer.zero_grad(set_to_none=True)
        x, y, d = self.batch(b)
        with meter.watch():
            with self.autocast():
                loss, _ = self.strategy.training_loss(self.model, self.criterion, x, y, d, self.aug_step)
            loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def eval_step(self, b: int) -> None:
        """The engine's evaluate(): eval mode, no grad, same autocast, while grads and optimizer state exist."""
        self.model.eval()
        try:
            x, _, _ = self.batch(b)
            with self.autocast():
                self.model(x)
        finally:
            self.model.train()

    def release(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.state.clear()


def run_trial(bench: ProbeBench, meter, batch: int, steps: int = 2) -> Trial:
    """`steps` training steps at `batch`; an out-of-memory error means it does not fit."""
    meter.begin(bench)
    step_s, oom = None, False
    try:
        for _ in range(steps):
            meter.sync()
            t0 = time.perf_counter()
            bench.train_step(batch, meter)
            meter.sync()
            step_s = time.perf_counter() - t0
        peak = meter.peak(bench, batch)
    except Exception as err:  # noqa: BLE001 - only OOM means "does not fit"
        if not is_oom(err):
            raise
        oom = True
    if oom:  # outside the except block: its traceback no longer pins the step's tensors
        bench.optimizer.zero_grad(set_to_none=True)
        meter.cleanup(oom=True)
        return Trial(batch=batch, fits=False, oom=True, peak_gib=None, step_s=None)
    bench.optimizer.zero_grad(set_to_none=True)
    meter.cleanup()
    return Trial(batch=batch, fits=peak <= meter.limit, oom=False, peak_gib=peak / GIB, step_s=step_s)


def run_eval_check(bench: ProbeBench, meter, batch: int) -> tuple[bool, Optional[float]]:
    """Evaluation at `batch` after a training step (the engine keeps grads and optimizer state then)."""
    oom = False
    try:
        bench.train_step(batch, meter)
        meter.begin(bench)
        with meter.watch():
            bench.eval_step(batch)
        peak = meter.peak(bench, batch)
    except Exception as err:  # noqa: BLE001
        if not is_oom(err):
            raise
        oom = True
    bench.optimizer.zero_grad(set_to_none=True)
    meter.cleanup(oom=oom)
    if oom:
        return False, None
    return peak <= meter.limit, peak / GIB
