"""System monitor (issue 16.13): GPU use (NVML, mocked here), CPU/RSS of the run and loader wait,
sampled live and logged per epoch in metrics.jsonl; shown on the live screen in one line."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

import core.training.trainer
import core.hardware.system_stats as sysmon
from core.training.trainer import Trainer
from core.events import SystemStats
from core.config.resolve import resolve_config
from core.runs.folder import read_metrics
from medcls_tui.run_state import RunState
from medcls_tui.widgets.system_monitor import SystemMonitorBar, system_text
from test_tui_helpers import make_app, picker_ready, scripted_events, show_scripted_run, wait_for_text

GIB = 2**30


class FakeNvml:
    """pynvml stand-in: two cards, utilisation read from a script, init/shutdown counted."""

    def __init__(self, utils=(40.0, 60.0)):
        self.utils = list(utils)
        self.reads = 0
        self.inits = self.shutdowns = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"h{i}"

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle}"

    def nvmlDeviceGetUtilizationRates(self, handle):
        assert handle == "h1", "read the card torch trains on (CUDA_VISIBLE_DEVICES=1 -> cuda:0 is h1)"
        util = self.utils[self.reads % len(self.utils)]
        self.reads += 1
        return SimpleNamespace(gpu=util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=int((3 + self.reads) * GIB), total=80 * GIB, free=0)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CPU run that the monitor treats as training on cuda:0, with NVML answering from FakeNvml."""
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(sysmon, "gpu_index_of", lambda device: 0)
    return nvml


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(flags, on_event=None):
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=on_event)
    summary = trainer.fit()
    assert summary["status"] == "finished", summary.get("error")
    return trainer


@pytest.mark.usefixtures("one_torch_thread")
def test_engine_logs_system_fields_per_epoch_and_samples_live(tiny_flags, fake_gpu, monkeypatch):
    monkeypatch.setattr(sysmon, "SAMPLE_INTERVAL_S", 0.0)  # a live sample after every step
    events = []
    trainer = run({**tiny_flags, "max_steps_per_epoch": 3}, events.append)

    live = [e for e in events if isinstance(e, SystemStats) and e.scope == "live"]
    assert len(live) == 6 and all(e.steps == 1 for e in live)
    records = [r for r in read_metrics(trainer.run_dir) if r["event"] == "SystemStats"]
    assert [r["scope"] for r in records] == ["epoch", "epoch"]  # live samples are not logged
    for epoch, record in enumerate(records, 1):
        assert record["epoch"] == epoch and record["steps"] == 3
        assert record["gpu_mem_total_gib"] == pytest.approx(80.0)
        assert record["on_gpu"] is True
        assert record["cpu_pct"] > 0 and record["rss_gib"] > 0.05  # torch + a model are resident
        assert 0.0 <= record["loader_wait_frac"] <= 1.0
        assert record["step_s"] >= record["loader_wait_s"] >= 0.0
    # each epoch: 3 live reads (alternating 40/60) + 1 at its end, averaged; memory is the epoch's peak
    assert records[0]["gpu_util_pct"] == pytest.approx((40 + 60 + 40 + 60) / 4)
    assert records[0]["gpu_mem_used_gib"] == pytest.approx(3 + 4)
    assert fake_gpu.inits == fake_gpu.shutdowns == 1  # NVML opened once per run and released
    # the past run's record folds into the UI state like the live sample does
    state = RunState.from_records(read_metrics(trainer.run_dir))
    assert state.system.scope == "epoch" and state.system.epoch == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_loader_wait_is_host_time_around_next_batch(tiny_flags, monkeypatch):
    """A loader that takes 100 s per batch on the monitor's clock starves the step; a slow step does not."""
    clock = FakeClock()
    monkeypatch.setattr(sysmon, "CLOCK", clock)
    real_loader, real_step = core.training.trainer.make_loader, Trainer._train_step

    def slow_loader(*args, **kwargs):
        for batch in real_loader(*args, **kwargs):
            clock.now += 100.0
            yield batch

    def slow_step(self, *args, **kwargs):
        clock.now += 100.0
        return real_step(self, *args, **kwargs)

    flags = {**tiny_flags, "epochs": 1, "max_steps_per_epoch": 2}
    monkeypatch.setattr(core.training.trainer, "make_loader", slow_loader)
    starved = [r for r in read_metrics(run(flags).run_dir) if r["event"] == "SystemStats"][0]
    assert starved["loader_wait_s"] == pytest.approx(100.0) and starved["step_s"] == pytest.approx(100.0)
    assert starved["loader_wait_frac"] == pytest.approx(1.0) and starved["starved"] is True

    monkeypatch.setattr(core.training.trainer, "make_loader", real_loader)
    monkeypatch.setattr(Trainer, "_train_step", slow_step)
    busy = [r for r in read_metrics(run({**flags, "run_name": "busy"}).run_dir) if r["event"] == "SystemStats"][0]
    assert busy["loader_wait_s"] == pytest.approx(0.0) and busy["step_s"] == pytest.approx(100.0)
    assert busy["starved"] is False and busy["gpu_util_pct"] is None  # CPU run: no GPU fields


def test_monitor_samples_at_most_once_per_interval(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(sysmon, "CLOCK", clock)
    reads = []
    monkeypatch.setattr(sysmon, "process_cpu_s", lambda: reads.append(1) or 0.0)
    monitor = sysmon.SystemMonitor("cpu")
    monitor.begin_epoch()
    before = len(reads)
    samples = []
    for _ in range(10):
        clock.now += 0.5
        samples.append(monitor.step_done(1))
    # 10 steps of 0.5 s with a 1.5 s interval: samples at steps 3, 6, 9; no /proc read on the others
    assert [i for i, s in enumerate(samples, 1) if s is not None] == [3, 6, 9]
    assert all(s.steps == 3 for s in samples if s is not None)
    assert len(reads) - before == 3 * 2  # per sample: CPU of the window, then the next window's start


def test_nvml_failure_leaves_gpu_fields_empty(monkeypatch):
    class Broken(FakeNvml):
        def nvmlDeviceGetUtilizationRates(self, handle):
            raise RuntimeError("GPU is lost")

    broken = Broken()
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    reader = sysmon.NvmlReader(0)
    assert reader.read() == (None, None, None)
    assert reader.handle is None and broken.shutdowns == 1
    assert sysmon.NvmlReader(5).read() == (None, None, None)  # no such card


def _stats(**overrides) -> SystemStats:
    values = dict(epoch=2, scope="live", steps=4, cpu_pct=150.0, rss_gib=2.5, gpu_util_pct=35.0,
                  gpu_mem_used_gib=10.5, gpu_mem_total_gib=80.0, loader_wait_s=0.42, step_s=0.6,
                  loader_wait_frac=0.7, starved=True, on_gpu=True)
    values.update(overrides)
    return SystemStats(**values)


def test_system_line_fits_80_columns_at_its_widest():
    widest = _stats(cpu_pct=1600.0, rss_gib=123.4, gpu_util_pct=100.0, gpu_mem_used_gib=139.8,
                    gpu_mem_total_gib=139.8, loader_wait_frac=1.0, loader_wait_s=12.345, starved=False)
    for stats in (widest, _stats(cpu_pct=1600.0, rss_gib=123.4, gpu_mem_total_gib=139.8)):
        assert len(system_text(stats).plain) <= 78  # the screen's padding included


async def test_live_screen_shows_system_line_at_80x24(tmp_path):
    app = make_app(tmp_path / "runs", stable=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        session = show_scripted_run(app, scripted_events("runs/demo-run"))
        await wait_for_text(pilot, "epoch 4/10")
        bar = app.screen.query_one(SystemMonitorBar)
        assert not bar.display  # nothing measured yet: no empty line
        session.buffer(_stats())
        text = await wait_for_text(pilot, "GPU starved: loader wait 70%")
        line = next(ln for ln in text.splitlines() if "GPU starved" in ln)
        assert "GPU 35% 10.5/80.0G" in line and "CPU 150% RAM 2.5G" in line
        assert bar.display and bar.region.height == 1 and bar.region.width <= 80
        session.buffer(_stats(gpu_util_pct=None, gpu_mem_used_gib=None, gpu_mem_total_gib=None, on_gpu=False,
                              starved=False, loader_wait_frac=0.05, loader_wait_s=0.012))
        text = await wait_for_text(pilot, "loader wait 5% (12 ms/step)")
        assert "GPU" not in next(ln for ln in text.splitlines() if "loader wait" in ln)


def test_cli_prints_each_epochs_system_line_only():
    import io

    from medcls_tui.reporter import ConsoleReporter

    out = io.StringIO()
    reporter = ConsoleReporter(stream=out, tty=False)
    reporter(_stats(scope="live"))
    assert out.getvalue() == ""
    reporter(_stats(scope="epoch"))
    line = out.getvalue().strip()
    assert line.startswith("epoch 2 system: GPU 35% busy, 10.5/80.0 GiB, CPU 150%, RSS 2.5 GiB")
    assert "loader wait 70% of 600 ms/step (GPU starved: raise --num_workers" in line
