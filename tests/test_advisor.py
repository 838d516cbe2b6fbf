"""Batch-size advisor: hardware reading (mocked NVML / torch.cuda), table advice per card and mode,
the probe's search on a simulated card, the real CPU probe on a tiny model, and `medcls advise`."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from core.hardware import advisor
from core.hardware import batch_probe
from core.hardware import gpu_memory
from core.hardware import probe_bench
from core.hardware.advice_table import Advice, model_advice, nominal_gib, table_advice
from core.hardware.advisor import GpuInfo, HardwareInfo, ProbeResult, probe_batch_size, read_hardware
from core.config import TrainConfig
from core.models.build import build_model
from medcls_tui.cli_advise import advise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MIB, GIB = 2**20, 2**30
# name, total MiB as NVML reports it (a few cards report less than their marketed size)
CARDS = {
    8: ("NVIDIA GeForce RTX 3070", 8192),
    16: ("Tesla T4", 15360),
    24: ("NVIDIA L4", 23034),
    40: ("NVIDIA A100-SXM4-40GB", 40960),
    80: ("NVIDIA H100 80GB HBM3", 81559),
}
SPEC_ROWS = {8: (16, 32), 16: (32, 64), 24: (64, 128), 40: (64, 128), 80: (64, 128)}


# ------------------------------------------------------------------ mocks
class Proc:
    def __init__(self, pid, used):
        self.pid, self.usedGpuMemory = pid, used


def fake_nvml(cards, procs=None, fail=False):
    """A stand-in pynvml module: cards = [(name, total_bytes, used_bytes)], procs = {index: [Proc]}."""
    procs = procs or {}
    mod = types.SimpleNamespace()

    def init():
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    mod.nvmlInit = init
    mod.nvmlShutdown = lambda: None
    mod.nvmlDeviceGetCount = lambda: len(cards)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i
    mod.nvmlDeviceGetName = lambda h: cards[h][0].encode()  # older bindings return bytes
    mod.nvmlDeviceGetUUID = lambda h: f"GPU-{h:04d}-uuid"
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        total=cards[h][1], used=cards[h][2], free=cards[h][1] - cards[h][2])
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: procs.get(h, [])
    mod.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return mod


@pytest.fixture
def no_torch_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def card(size, used_gib=0.3, others=None):
    name, total_mib = CARDS[size]
    return [(name, total_mib * MIB, int(used_gib * GIB))], {0: others or []}


# ------------------------------------------------------------------ hardware
@pytest.mark.parametrize("size", sorted(CARDS))
def test_nvml_reads_every_card(monkeypatch, no_torch_gpu, size):
    cards, procs = card(size)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(cards, procs))
    hw = read_hardware()
    assert hw.source == "nvml" and len(hw.gpus) == 1
    gpu = hw.gpus[0]
    assert gpu.name == CARDS[size][0] and gpu.index == 0
    assert gpu.total_gib == pytest.approx(CARDS[size][1] / 1024)
    assert gpu.free_gib == pytest.approx(CARDS[size][1] / 1024 - 0.3)
    assert hw.cpu_ram_total_gib and hw.cpu_ram_total_gib > 0
    assert nominal_gib(gpu.total_gib) == size


def test_other_processes_count_against_free_memory(monkeypatch, no_torch_gpu):
    import os

    other, mine = Proc(4242, 12 * GIB), Proc(os.getpid(), 2 * GIB)
    cards, procs = card(24, used_gib=14.5, others=[other, mine])
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(cards, procs))
    gpu = read_hardware().gpus[0]
    assert gpu.used_by_other_processes_gib == pytest.approx(12.0)  # our own 2 GiB is not "other"
    assert gpu.free_gib == pytest.approx(23034 / 1024 - 14.5)
    assert gpu.usable_gib == pytest.approx(23034 / 1024 - 12.0)
    shared = table_advice("resnet50", "full_finetune", 224, True, hardware=read_hardware())
    alone = table_advice("resnet50", "full_finetune", 224, True,
                         hardware=HardwareInfo(gpus=[GpuInfo(0, "NVIDIA L4", 22.5, 22.2, 0.3, 0.0)]))
    assert (alone.batch_low, alone.batch_high) == (64, 128)
    assert (shared.batch_low, shared.batch_high) == (16, 32)  # 24 - 12 = 12 GiB left: the 8 GB row
    assert any("other processes hold 12.0 GiB" in r for r in shared.reasons)


def test_hidden_process_memory_counts_all_used_memory(monkeypatch, no_torch_gpu):
    cards, _ = card(16, used_gib=6.0)
    hidden = {0: [Proc(999, None)]}  # containers: processes listed without their memory
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(cards, hidden))
    assert read_hardware().gpus[0].used_by_other_processes_gib == pytest.approx(6.0)


def test_cuda_visible_devices_maps_nvml_to_torch_indices(monkeypatch, no_torch_gpu):
    cards = [("GPU A", 8 * GIB, 0), ("GPU B", 80 * GIB, 0)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(cards))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    hw = read_hardware()
    assert [(g.index, g.name) for g in hw.gpus] == [(0, "GPU B")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0000")
    assert [g.name for g in read_hardware().gpus] == ["GPU A"]


def test_torch_fallback_when_nvml_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], fail=True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (30 * GIB, 40 * GIB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA A100-PCIE-40GB")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i=0: 2 * GIB)
    hw = read_hardware()
    assert hw.source == "torch"
    gpu = hw.gpus[0]
    assert (gpu.total_gib, gpu.free_gib, gpu.used_gib) == (40.0, 30.0, 10.0)
    assert gpu.used_by_other_processes_gib == 8.0  # used minus this process's pool


def test_no_gpu_reads_cpu_ram(monkeypatch, no_torch_gpu):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], fail=True))
    hw = read_hardware()
    assert hw.source == "cpu" and hw.gpus == []
    assert hw.cpu_ram_total_gib > 0 and 0 < hw.cpu_ram_free_gib <= hw.cpu_ram_total_gib
    assert hw.gpu("auto") is None


def test_cpu_ram_falls_back_to_sysconf(monkeypatch):
    import builtins

    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path) == "/proc/meminfo":
            raise OSError("no procfs")
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    total, free = gpu_memory.cpu_ram_gib()
    assert total > 0 and (free is None or free <= total)


# ------------------------------------------------------------------ table advice
def gpu_hw(size, others_gib=0.0):
    name, total_mib = CARDS[size]
    total = total_mib / 1024
    return HardwareInfo(gpus=[GpuInfo(0, name, total, total - 0.3 - others_gib, 0.3 + others_gib, others_gib)],
                        cpu_ram_total_gib=64.0, cpu_ram_free_gib=60.0, source="nvml")


@pytest.mark.parametrize("size", sorted(CARDS))
def test_table_advice_follows_the_spec_rows(size):
    low, high = SPEC_ROWS[size]
    small = table_advice("resnet50", "full_finetune", 224, True, hardware=gpu_hw(size))
    big = table_advice("swin_base", "full_finetune", 224, True, hardware=gpu_hw(size))
    probe = table_advice("swin_base", "linear_probe", 224, True, hardware=gpu_hw(size))
    assert (small.batch_low, small.batch_high) == (low, high)
    assert (small.suggested_batch, small.grad_accum_steps) == (high, 1)  # upper end for a small model
    assert (big.suggested_batch, big.effective_batch) == (low, low)  # lower end for a larger model
    assert (probe.batch_low, probe.batch_high, probe.effective_batch) == (256, 512, 256)
    assert any(f"batch {low}-{high}" in r for r in small.reasons)
    assert not small.model_advice


def test_table_advice_scales_for_size_and_precision_keeping_the_effective_batch():
    hw = gpu_hw(24)
    base = table_advice("swin_base", "full_finetune", 224, True, hardware=hw)
    big_img = table_advice("swin_base", "full_finetune", 448, True, hardware=hw)
    fp32 = table_advice("swin_base", "full_finetune", 224, False, hardware=hw)
    ckpt = table_advice("swin_base", "full_finetune", 448, True, hardware=hw, grad_checkpointing=True)
    assert (base.suggested_batch, base.grad_accum_steps) == (64, 1)
    assert (big_img.suggested_batch, big_img.grad_accum_steps) == (16, 4)  # 4x the pixels
    assert (fp32.suggested_batch, fp32.grad_accum_steps) == (32, 2)
    assert ckpt.suggested_batch > big_img.suggested_batch
    for a in (base, big_img, fp32, ckpt):
        assert a.effective_batch == a.suggested_batch * a.grad_accum_steps == 64
    assert any("img_size 448" in r for r in big_img.reasons)


def test_table_advice_without_gpu_uses_cpu_batches():
    hw = HardwareInfo(gpus=[], cpu_ram_total_gib=16.0, cpu_ram_free_gib=12.0, source="cpu")
    a = table_advice("resnet50", "full_finetune", 224, True, hardware=hw)
    assert (a.batch_low, a.batch_high) == (16, 32)
    assert any("no GPU" in r for r in a.reasons)


def test_far_below_the_range_gives_model_advice_with_numbers():
    a = table_advice("vit_base_patch16", "full_finetune", 512, False, hardware=gpu_hw(8))
    assert a.suggested_batch < a.batch_low / 2
    text = "\n".join(a.model_advice)
    assert "--grad_checkpointing" in text and "--img_size 384" in text and "--mode linear_probe" in text
    assert "--model resnet50" in text and "85.8M" in text  # next budget tier, with parameter counts
    assert "--mixed_precision" in text


def test_model_advice_when_batch_one_does_not_fit():
    lines = model_advice("swin_base", "full_finetune", 384, max_batch=0, target=16,
                         budget_gib=7.2, fixed_gib=1.5, per_image_gib=0.9)
    assert "does not fit even at batch 1 in 7.2 GiB" in lines[0]
    ckpt = next(line for line in lines if line.startswith("--grad_checkpointing"))
    assert "~19 per step" in ckpt  # (7.2 - 1.5) / (0.9 / 3)
    assert any(line.startswith("--model resnet50") for line in lines)


# ------------------------------------------------------------------ probe search on a simulated card
class SimBench:
    """A card of `capacity_gib`: each image costs per_image_gib on top of fixed_gib; above the card, OOM."""

    def __init__(self, fixed_gib, per_image_gib, capacity_gib, eval_share=0.3):
        self.model = torch.nn.Linear(2, 2)  # no BatchNorm: the search starts at 1
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0)
        self.fixed, self.per_image, self.capacity, self.eval_share = fixed_gib, per_image_gib, capacity_gib, eval_share
        self.last_peak = 0.0
        self.batches = []

    def _use(self, gib):
        if gib > self.capacity:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {gib:.2f} GiB")
        self.last_peak = max(self.last_peak, gib)

    def train_step(self, b, meter):
        self.batches.append(b)
        self._use(self.fixed + self.per_image * b)

    def eval_step(self, b):
        self._use(self.fixed + self.eval_share * self.per_image * b)


class SimMeter:
    def __init__(self, capacity_gib, margin):
        self.capacity, self.limit = capacity_gib * GIB, capacity_gib * GIB * (1 - margin)

    def describe(self, margin):
        return f"simulated card, limit {self.limit / GIB:.1f} GiB"

    def begin(self, bench):
        bench.last_peak = 0.0

    def watch(self):
        import contextlib

        return contextlib.nullcontext()

    def peak(self, bench, batch):
        return bench.last_peak * GIB

    def cleanup(self, oom=False):
        pass

    def sync(self):
        pass


def simulate(size, fixed=2.0, per_image=0.1, model="resnet50", mode="full_finetune", budget=30.0, margin=0.10,
             max_batch=1024):
    capacity = CARDS[size][1] / 1024 - 0.5
    cfg = TrainConfig(model=model, mode=mode, img_size=224)
    table = table_advice(model, mode, 224, True, hardware=gpu_hw(size))
    target = batch_probe.target_batch(table.batch_low, table.batch_high, mode, model)
    bench, meter = SimBench(fixed, per_image, capacity), SimMeter(capacity, margin)
    result = batch_probe.measure(bench, meter, batch_probe._Clock(budget), cfg, table, target, max_batch, margin,
                                 on_gpu=True)
    exact = int((capacity * (1 - margin) - fixed) / per_image)
    return result, exact, table, bench


@pytest.mark.parametrize("size", sorted(CARDS))
def test_probe_search_finds_the_limit_with_margin(size):
    result, exact, table, bench = simulate(size, fixed=2.0, per_image=0.25)
    assert result.max_safe_batch <= exact and result.max_safe_batch >= 0.93 * exact
    assert result.recommended_batch <= result.max_safe_batch
    assert result.recommended_batch * result.grad_accum_steps == result.effective_batch
    assert result.effective_batch >= table.batch_low and result.eval_batch_ok
    assert result.recommended_batch <= table.batch_high
    assert result.peak_mem_gib <= result.limit_gib
    assert any(t["oom"] or not t["fits"] for t in result.trials)  # it went past the limit once
    assert not result.timed_out and result.max_is_measured


def test_probe_accumulates_to_the_tips_batch_when_the_card_is_small():
    result, exact, table, _ = simulate(8, fixed=1.0, per_image=0.5)  # ~12 images fit, tips want 32
    assert result.max_safe_batch < 32
    assert (result.recommended_batch, result.grad_accum_steps) == (8, 4)
    assert any("micro-batch 8 fits, the tips want 32" in r for r in result.reasons)


def test_probe_reports_model_advice_when_batch_one_does_not_fit():
    result, _, _, _ = simulate(8, fixed=9.0, per_image=0.5, model="swin_base")
    assert result.max_safe_batch == 0 and result.recommended_batch == 1
    assert "does not fit" in result.reasons[0]
    assert any("--grad_checkpointing" in line for line in result.model_advice)
    assert any("--model resnet50" in line for line in result.model_advice)


def test_probe_lowers_the_batch_when_evaluation_does_not_fit():
    capacity = CARDS[24][1] / 1024 - 0.5
    cfg = TrainConfig(model="resnet50", img_size=224)
    table = table_advice("resnet50", "full_finetune", 224, True, hardware=gpu_hw(24))
    bench, meter = SimBench(2.0, 0.1, capacity, eval_share=1.6), SimMeter(capacity, 0.1)
    r = batch_probe.measure(bench, meter, batch_probe._Clock(30), cfg, table, 128, 1024, 0.1, on_gpu=True)
    assert r.eval_batch_ok and r.recommended_batch * r.grad_accum_steps >= 128
    assert 2.0 + 1.6 * 0.1 * r.recommended_batch <= capacity * 0.9
    assert any("evaluation at batch" in x and "lowering" in x for x in r.reasons)


# ------------------------------------------------------------------ real CPU probe on a tiny model
TINY_MODEL = "test_resnet"  # timm's 0.4M-parameter ResNet (BatchNorm): quick even on a busy 2-core CPU


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(TINY_MODEL, 3, "full_finetune", img_size=32)


def test_cpu_probe_on_a_tiny_model(tiny_model):
    cfg = TrainConfig(model=TINY_MODEL, img_size=32, dataset="synthetic")
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    rng = torch.get_rng_state()
    tiny_model.eval()
    result = probe_batch_size(cfg, model=tiny_model, device="cpu", time_budget_s=25, max_batch=256)
    assert isinstance(result, ProbeResult) and result.device == "cpu"
    assert result.max_safe_batch >= result.recommended_batch >= 2
    assert result.recommended_batch * result.grad_accum_steps == result.effective_batch == 32
    assert result.images_per_sec and result.images_per_sec > 0
    assert result.peak_mem_gib and result.peak_mem_gib < result.limit_gib
    if not result.timed_out:
        assert [t["batch"] for t in result.trials][:5] == [2, 4, 8, 16, 32]  # BatchNorm: from 2, doubling
        assert result.eval_batch_ok and result.max_safe_batch == 256 and not result.max_is_measured
    # the caller's model and RNG are untouched
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert not tiny_model.training and all(p.grad is None for p in tiny_model.parameters())


def test_cpu_memory_count_grows_with_batch_and_with_xdomainmix(tiny_model):
    plain = TrainConfig(model=TINY_MODEL, img_size=32)
    xdm = TrainConfig(model=TINY_MODEL, img_size=32, augmentation="xdomainmix")
    peaks = {}
    for name, cfg in (("plain", plain), ("xdm", xdm)):
        bench = probe_bench.ProbeBench(cfg, tiny_model, torch.device("cpu"), TINY_MODEL, "cnn")
        meter = probe_bench.CpuMeter(0.1)
        meter.rss_peak = False  # compare the counted tensors: RSS growth is noisy on a shared machine
        peaks[name] = [probe_bench.run_trial(bench, meter, b, steps=1).peak_gib for b in (4, 16)]
        bench.release()
    assert peaks["plain"][1] > peaks["plain"][0]
    assert peaks["xdm"][1] > peaks["plain"][1]  # XDomainMix's extra graph is counted


class FakeClock:
    """A clock the test advances: the probe's budget logic is checked by counts, on any machine speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def test_probe_respects_its_time_budget(tiny_model, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(batch_probe, "time", clock)
    monkeypatch.setattr(probe_bench, "time", clock)
    real_step = probe_bench.ProbeBench.train_step
    steps = []

    def slow_step(self, b, meter):
        clock.now += 0.25 * b / 2  # every training step "takes" 0.25 s per 2 images
        steps.append(b)
        return real_step(self, b, meter)

    monkeypatch.setattr(probe_bench.ProbeBench, "train_step", slow_step)
    cfg = TrainConfig(model=TINY_MODEL, img_size=32)
    result = probe_batch_size(cfg, model=tiny_model, device="cpu", time_budget_s=3.0)
    # batch 2 (2 steps: 0.5 s) and batch 4 (predicted 1.25 x 1.0 s, ends at 1.75 s) fit the 3 s budget;
    # batch 8 would end at 1.5 + 1.25 x 2.0 = 4.0 s: the probe stops before running it.
    assert [t["batch"] for t in result.trials] == [2, 4] and max(steps) == 4
    assert result.timed_out and result.elapsed_s <= 3.0
    assert result.max_safe_batch >= 2 and result.recommended_batch >= 2
    assert any("time budget" in r for r in result.reasons)


def test_models_without_batchnorm_start_at_one():
    assert batch_probe.min_batch(build_model("test_vit", 2, "full_finetune", img_size=32)) == 1
    assert batch_probe.min_batch(build_model(TINY_MODEL, 2, "full_finetune", img_size=32)) == 2
    # linear probe: the frozen backbone's BatchNorm is in eval mode, but the head's BatchNorm1d trains
    assert batch_probe.min_batch(build_model("test_vit", 2, "linear_probe", img_size=32).train()) == 2


def test_probe_with_no_time_answers_with_the_table(tiny_model):
    result = probe_batch_size(TrainConfig(model=TINY_MODEL, img_size=32), model=tiny_model, device="cpu",
                              time_budget_s=0)
    assert result.timed_out and result.trials == [] and result.recommended_batch == 32
    assert any("table advice applies" in r for r in result.reasons)


# ------------------------------------------------------------------ medcls advise
@pytest.fixture
def advise_app():
    app = typer.Typer()
    app.command("advise")(advise)

    @app.command("other")
    def other() -> None:  # a second command keeps `advise` a sub-command, as in medcls
        pass

    return app


def test_advise_json_parses(advise_app, monkeypatch):
    monkeypatch.setattr(advisor, "read_hardware", lambda: gpu_hw(16))
    out = CliRunner().invoke(advise_app, ["advise", "--model", "swin_base", "--img_size", "224", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["hardware"]["gpus"][0]["name"] == "Tesla T4"
    assert (data["table"]["batch_low"], data["table"]["batch_high"]) == (32, 64)
    assert data["probe"] is None and data["config"]["img_size"] == 224


def test_advise_report_and_probe_json(advise_app):
    runner = CliRunner()
    out = runner.invoke(advise_app, ["advise", "--model", TINY_MODEL, "--img_size", "32"])
    assert out.exit_code == 0 and "Table advice" in out.stdout and "--probe" in out.stdout
    out = runner.invoke(advise_app, ["advise", "--model", TINY_MODEL, "--img_size", "32", "--probe", "--json",
                                     "--time_budget", "15", "--max_batch", "8"])
    assert out.exit_code == 0, out.output
    probe = json.loads(out.stdout)["probe"]
    assert probe["device"] == "cpu" and probe["recommended_batch"] >= 2
    assert probe["recommended_batch"] * probe["grad_accum_steps"] == probe["effective_batch"]


def test_advise_rejects_unknown_model(advise_app):
    out = CliRunner().invoke(advise_app, ["advise", "--model", "not_a_model"])
    assert out.exit_code == 2 and "unknown model" in out.output


# ------------------------------------------------------------------ train --batch_size auto
def test_batch_size_auto_trains_at_the_probed_batch_without_side_effects(tiny_flags, monkeypatch):
    """The engine probes its own model: the run must equal one started with that batch by hand."""
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    calls = []

    def quick_probe(config, model=None, device=None, **kw):
        result = probe_batch_size(config, model=model, device=device, time_budget_s=20, max_batch=16)
        calls.append((model, result))
        return result

    monkeypatch.setattr(advisor, "probe_batch_size", quick_probe)
    flags = {**tiny_flags, "model": TINY_MODEL, "epochs": 1}
    auto = Trainer(resolve_config({**flags, "batch_size": "auto"}, vram_gib=None))
    summary = auto.fit()
    (model, result), = calls
    assert model is auto.model and summary["status"] == "finished"
    assert summary["batch_size"] == auto.batch_size == result.recommended_batch
    assert summary["effective_batch"] == result.recommended_batch * result.grad_accum_steps
    # the run folder records the measured numbers, so --retrain resumes with the same batches
    saved = yaml.safe_load((auto.run_dir / "config.yaml").read_text())
    assert (saved["batch_size"], saved["grad_accum_steps"]) == (result.recommended_batch, result.grad_accum_steps)
    manual = Trainer(resolve_config({**flags, "batch_size": result.recommended_batch,
                                     "grad_accum_steps": result.grad_accum_steps}, vram_gib=None))
    manual.fit()
    a, b = auto.model.state_dict(), manual.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, BN statistics and RNG were restored


def test_batch_size_auto_keeps_the_users_accumulation(tiny_flags, monkeypatch):
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    measured = ProbeResult(max_safe_batch=12, recommended_batch=8, grad_accum_steps=4, eval_batch_ok=True,
                           images_per_sec=None, peak_mem_gib=None, reasons=[], timed_out=False, model_advice=[])
    monkeypatch.setattr(advisor, "probe_batch_size", lambda *a, **k: measured)
    flags = {**tiny_flags, "model": TINY_MODEL, "epochs": 1, "batch_size": "auto"}
    default_accum = Trainer(resolve_config(flags, vram_gib=None))
    default_accum._setup()
    assert (default_accum.batch_size, default_accum.cfg.grad_accum_steps) == (8, 4)
    chosen = Trainer(resolve_config({**flags, "grad_accum_steps": 1}, vram_gib=None))
    chosen._setup()
    assert (chosen.batch_size, chosen.cfg.grad_accum_steps) == (8, 1)
