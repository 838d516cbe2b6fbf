"""The measured batch probe: grow the batch, binary-search the limit, keep a margin, recommend.

Finder results that OOM later are the common complaint (fragmentation, eval, neighbours), so the
probe runs real steps of the configured run (core/hardware/probe_bench.py), keeps a safety margin, checks
evaluation at the recommended batch, and reaches the tips' effective batch with accumulation
instead of a bigger micro-batch. It never changes the caller's model: weights, buffers, train
mode and the RNG streams are restored, and it stops when its time budget would be exceeded,
answering with the best batch measured so far.

On CUDA every batch is measured. On CPU memory is rarely the limit and big batches are slow, so
the probe grows only up to the tips' batch and extrapolates the maximum from the measured
memory per image (straight line through the two largest trials).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from core.hardware.advice_table import model_advice, pow2_floor, split_batch, table_advice, target_batch
from core.hardware.probe_bench import GIB, CpuMeter, GpuMeter, ProbeBench, Trial, guess_task, run_eval_check, run_trial


@dataclass
class ProbeResult:
    max_safe_batch: int
    """Largest batch within the limit (0: not even batch 1). CPU: extrapolated unless a trial failed."""
    recommended_batch: int
    grad_accum_steps: int
    """Accumulation that brings recommended_batch to the tips' effective batch."""
    eval_batch_ok: bool
    images_per_sec: Optional[float]
    """Training steps only (random data on the device, no loader): an upper bound for a real run."""
    peak_mem_gib: Optional[float]
    """Peak at the recommended batch: measured on CUDA, counted on CPU."""
    reasons: list[str]
    timed_out: bool
    model_advice: list[str]
    device: str = "cpu"
    effective_batch: int = 0
    budget_gib: Optional[float] = None
    limit_gib: Optional[float] = None
    max_is_measured: bool = True
    trials: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def nice_floor(n: int) -> int:
    """Multiples of 8 from 8 up (tensor cores, BN statistics), powers of two below."""
    return (n // 8) * 8 if n >= 8 else pow2_floor(n)


def _probe_config(config):
    """A TrainConfig with the few values the probe needs filled in (works before resolve_config too)."""
    from core.config import tips

    cfg = getattr(config, "config", config)  # ResolvedConfig or TrainConfig
    if cfg.img_size is None:
        cfg = cfg.model_copy(update={"img_size": tips.dataset_tip(cfg.dataset).get("img_size", 224)})
    return cfg


@contextlib.contextmanager
def _preserved(model: torch.nn.Module, device: torch.device, restore: bool):
    """Give the caller back its model untouched (weights, BN buffers, mode, grads) and its RNG streams."""
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()} if restore else None
    was_training = model.training
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            if saved is not None:
                model.load_state_dict(saved)
            model.train(was_training)
            for p in model.parameters():
                p.grad = None


class _Clock:
    def __init__(self, budget_s: float):
        self.start = time.perf_counter()
        self.deadline = self.start + budget_s
        self.last: Optional[Trial] = None

    SAFETY = 1.25
    """Step times vary (shared machines, first calls): predict a quarter more than the last trial."""

    def affords(self, batch: int, steps: float = 2) -> bool:
        """Would `steps` steps at `batch` end before the deadline? (time per step ~ linear in batch)"""
        now = time.perf_counter()
        if self.last is None or not self.last.step_s:
            return now < self.deadline
        return now + self.SAFETY * steps * self.last.step_s * batch / self.last.batch <= self.deadline

    def seen(self, trial: Trial) -> None:
        if trial.step_s:
            self.last = trial


def min_batch(model: torch.nn.Module) -> int:
    """BatchNorm cannot train on one image (torch raises), so such models start at 2."""
    bn = torch.nn.modules.batchnorm._BatchNorm
    return 2 if any(isinstance(m, bn) and m.training for m in model.modules()) else 1


def _search(bench, meter, clock: _Clock, max_batch: int, grow_cap: Optional[int]):
    """Double from the smallest trainable batch until one does not fit (or the cap), then bisect to ~6%."""
    trials: list[Trial] = []

    def attempt(batch: int) -> Optional[Trial]:
        """One measured trial, or None when the time budget cannot afford it."""
        if not clock.affords(batch):
            return None
        trial = run_trial(bench, meter, batch)
        trials.append(trial)
        clock.seen(trial)
        return trial

    good, bad, timed_out, b = 0, None, False, min(max_batch, min_batch(bench.model))
    while True:
        t = attempt(b)
        if t is None:
            timed_out = True
            break
        if not t.fits:
            bad = b
            break
        good = b
        if b >= max_batch or (grow_cap is not None and b >= grow_cap):
            break
        b = min(2 * b, max_batch)
    while bad is not None and not timed_out and bad - good > max(1, good // 16):
        mid = (good + bad) // 2
        t = attempt(mid)
        if t is None:
            timed_out = True
            break
        good, bad = (mid, bad) if t.fits else (good, mid)
    return trials, good, bad, timed_out


def memory_line(trials: list[Trial]) -> tuple[Optional[float], Optional[float]]:
    """(fixed GiB, GiB per image) through the two largest fitting trials; (None, None) if < 2."""
    ok = sorted({t.batch: t.peak_gib for t in trials if t.peak_gib is not None and not t.oom}.items())
    if len(ok) < 2:
        return None, None
    (b1, p1), (b2, p2) = ok[-2], ok[-1]
    per_image = max((p2 - p1) / (b2 - b1), 1e-9)
    return p2 - per_image * b2, per_image


def _trial_text(t: Trial) -> str:
    if t.oom:
        return f"{t.batch} OOM"
    return f"{t.batch}{'' if t.fits else ' over limit'} {t.peak_gib:.2f} GiB"


def probe_batch_size(config, model=None, device=None, time_budget_s: float = 60, margin: float = 0.10,
                     max_batch: int = 1024) -> ProbeResult:
    """Measure the largest safe batch of `config` on `device` and recommend batch x accumulation.

    `model` (the engine's, already on the device) is reused and restored afterwards; without it the
    probe builds one (random init: weights do not change memory). The time budget counts from the call.
    """
    from core.hardware.host import pick_device
    from core.models.build import build_model, model_family, resolve_model_name

    if not 0 <= margin < 1:
        raise ValueError(f"margin: must be in [0, 1) (got {margin})")
    clock = _Clock(time_budget_s)
    cfg = _probe_config(config)
    device = torch.device(device) if device is not None else pick_device(cfg.device)
    on_gpu = device.type == "cuda"
    timm_name = resolve_model_name(cfg.model)
    family = model_family(timm_name)
    own = model is None
    if own:
        model = build_model(timm_name, guess_task(cfg)[0], cfg.mode, img_size=cfg.img_size,
                            drop_path_rate=cfg.drop_path_rate or 0.0, grad_checkpointing=cfg.grad_checkpointing)
        model.to(device)
        if cfg.channels_last if cfg.channels_last is not None else on_gpu and family in ("cnn", "convnext"):
            model.to(memory_format=torch.channels_last)
    dev_name = f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}" if on_gpu else "cpu"
    table = table_advice(cfg.model, cfg.mode, cfg.img_size, cfg.mixed_precision, device=dev_name,
                         grad_checkpointing=cfg.grad_checkpointing)
    with _preserved(model, device, restore=not own):
        model.train()
        bench = ProbeBench(cfg, model, device, timm_name, family)
        meter = GpuMeter(device, margin) if on_gpu else CpuMeter(margin)
        try:
            target = target_batch(table.batch_low, table.batch_high, cfg.mode, timm_name)
            result = measure(bench, meter, clock, cfg, table, target, max_batch, margin, on_gpu)
        finally:
            bench.release()
            del bench
            meter.cleanup(oom=True)  # one full collection: hand the memory back to the caller
    result.device = dev_name
    result.elapsed_s = round(time.perf_counter() - clock.start, 2)
    return result


def measure(bench, meter, clock: _Clock, cfg, table, target: int, max_batch: int, margin: float,
            on_gpu: bool) -> ProbeResult:
    """Search, then max safe / recommended batch, eval check, img/s, reasons and model advice.

    bench/meter are duck-typed (core/hardware/probe_bench.py), so tests drive this with a simulated card.
    """
    trials, good, bad, timed_out = _search(bench, meter, clock, max_batch, None if on_gpu else target)
    limit_gib = meter.limit / GIB
    reasons = [meter.describe(margin),
               f"tips: {table.batch_low}-{table.batch_high} for this card and mode, effective batch {target}"]
    if not trials:
        reasons.append("time budget used up before the first measurement: the table advice applies")
        return ProbeResult(max_safe_batch=0, recommended_batch=table.suggested_batch,
                           grad_accum_steps=table.grad_accum_steps, eval_batch_ok=False, images_per_sec=None,
                           peak_mem_gib=None, reasons=reasons, timed_out=True, model_advice=[],
                           effective_batch=table.effective_batch, budget_gib=round(meter.capacity / GIB, 2),
                           limit_gib=round(limit_gib, 2), max_is_measured=False)
    reasons.append("trials (batch, peak): " + ", ".join(_trial_text(t) for t in trials))
    fixed, per_image = memory_line(trials)
    max_safe, measured = good, True
    if not on_gpu and bad is None and per_image and not timed_out:
        max_safe = max(good, min(max_batch, int((limit_gib - fixed) / per_image)))
        measured = max_safe == good
        reasons.append(f"max safe batch {max_safe}: extrapolated from {per_image * 1024:.1f} MiB per image "
                       f"(measured up to {good}){' and capped by max_batch' if max_safe == max_batch else ''}")
    elif bad is None and good >= max_batch:
        reasons.append(f"max safe batch {max_safe}: capped by max_batch {max_batch}")
    elif bad is not None:
        failed = next(t for t in trials if t.batch == bad)
        why = "ran out of memory" if failed.oom else f"needs {failed.peak_gib:.2f} GiB, over the limit"
        reasons.append(f"max safe batch {max_safe}: batch {bad} {why}")
    if timed_out:
        reasons.append(f"time budget reached after {time.perf_counter() - clock.start:.1f} s: "
                       f"{max_safe} is the best measured so far (a lower bound)")
    rec, accum = _recommend(max_safe, target, table.batch_high if on_gpu else target)
    rec, accum, eval_ok, eval_peak = _check_eval(bench, meter, clock, rec, accum, target, max_safe, reasons)
    at_rec = next((t for t in reversed(trials) if t.batch == rec and t.fits), None)
    if at_rec is None and max_safe and clock.affords(rec):
        at_rec = run_trial(bench, meter, rec)
        trials.append(at_rec)
    ips = rec / at_rec.step_s if at_rec is not None and at_rec.step_s else None
    peaks = [p for p in (at_rec.peak_gib if at_rec else None, eval_peak) if p is not None]
    if max_safe == 0:
        reasons.insert(0, f"even batch {min_batch(bench.model)} does not fit within {limit_gib:.1f} GiB: "
                          "expect out-of-memory errors")
    else:
        reasons.append(f"recommended {rec} x {accum} accumulation = effective {rec * accum}"
                       + (f" (micro-batch {rec} fits, the tips want {target})" if accum > 1 else ""))
    if ips:
        reasons.append(f"~{ips:.0f} img/s at batch {rec} (training steps on random data, no data loading)")
    advice: list[str] = []
    if max_safe == 0 or (max_safe < table.batch_low / 2 and (on_gpu or bad is not None)):
        advice = model_advice(cfg.model, cfg.mode, cfg.img_size, mixed_precision=cfg.mixed_precision or not on_gpu,
                              grad_checkpointing=cfg.grad_checkpointing, max_batch=max_safe, target=target,
                              budget_gib=limit_gib, fixed_gib=fixed, per_image_gib=per_image)
    return ProbeResult(max_safe_batch=max_safe, recommended_batch=rec, grad_accum_steps=accum, eval_batch_ok=eval_ok,
                       images_per_sec=round(ips, 1) if ips else None,
                       peak_mem_gib=round(max(peaks), 3) if peaks else None,
                       reasons=reasons, timed_out=timed_out, model_advice=advice,
                       effective_batch=rec * accum, budget_gib=round(meter.capacity / GIB, 2),
                       limit_gib=round(limit_gib, 2), max_is_measured=measured,
                       trials=[asdict(t) for t in trials])


def _recommend(max_safe: int, target: int, upper: int) -> tuple[int, int]:
    """(micro-batch, accumulation): the tips' effective batch, as big a micro-batch as is safe."""
    if max_safe == 0:
        return 1, target
    if max_safe >= target:
        return max(target, min(upper, nice_floor(max_safe))), 1
    return split_batch(target, nice_floor(max_safe))


def _check_eval(bench, meter, clock: _Clock, rec: int, accum: int, target: int, max_safe: int,
                reasons: list[str]) -> tuple[int, int, bool, Optional[float]]:
    """Evaluation runs at the training batch (engine): lower the batch until it fits too."""
    eval_ok, eval_peak = False, None
    while max_safe and clock.affords(rec, 1.5):
        eval_ok, eval_peak = run_eval_check(bench, meter, rec)
        if eval_ok or rec == 1:
            break
        reasons.append(f"evaluation at batch {rec} exceeded the limit: lowering the batch")
        rec = max(1, nice_floor(rec // 2))
        accum = math.ceil(target / rec) if rec < target else 1
    if max_safe and eval_peak is not None:
        reasons.append(f"evaluation at batch {rec}: peak {eval_peak:.2f} GiB ({'ok' if eval_ok else 'over the limit'})")
    elif max_safe:
        reasons.append(f"evaluation at batch {rec} not checked: time budget used up")
    return rec, accum, eval_ok, eval_peak
