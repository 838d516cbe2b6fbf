"""TUI overhead: steps/s of the same tiny run under the Textual app (headless) vs `medcls train`.

    uv run python bench/tui_overhead.py [--rounds 3] [--model resnet18] [--steps 30] [--epochs 2]

Both sides run in their own process (same Python, same preset file), interleaved A/B per round
with alternating order. The TUI side runs the real app (picker -> ctrl+t -> live screen redrawing
at the default refresh rate) with Textual's headless driver.

Two measurements per run, both over the same window: step-to-step intervals inside an epoch, from
the engine's own `Step` records in metrics.jsonl (log_every 1), so start-up, data generation,
model creation and the (identical) validation between epochs are excluded on both sides:
  wall    steps per wall-clock second;
  cpu     steps per CPU-second of the whole process (all threads: training, UI, timers), from
          /proc/<pid>/task/*/stat sampled every 20 ms, split into the training thread and all
          other threads (in the TUI: the UI thread). On a shared machine other jobs move the wall
          rate between runs; the split shows what the TUI itself costs per step.
Ratios are TUI / CLI (target >= 0.95); the medians over the rounds are printed last.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_preset(folder: Path, model: str, steps: int, epochs: int, img_size: int) -> Path:
    data = {
        "name": "bench_tiny", "group": "custom", "description": "TUI overhead benchmark",
        "dataset": "synthetic", "model": model, "img_size": img_size, "synthetic_size": max(120, int(steps * 16 * 1.4)),
        "epochs": epochs, "batch_size": 16, "num_workers": 0, "max_steps_per_epoch": steps,
        "log_every": 1, "early_stopping": 0,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench_tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def step_windows(run_dir: Path) -> list[tuple[int, float, float]]:
    """(steps, t_start, t_end) between consecutive Step records of the same epoch (wall clock)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [(r["epoch"], r["global_step"], r["time"]) for r in records if r.get("event") == "Step"]
    windows = [(s1 - s0, t0, t1) for (e0, s0, t0), (e1, s1, t1) in zip(steps, steps[1:]) if e0 == e1]
    if not windows:
        raise RuntimeError(f"{run_dir}: too few Step records to time")
    return windows


def cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """CPU seconds at wall time t, interpolated between /proc samples."""
    for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
        if ta <= t <= tb:
            return ca + (cb - ca) * (t - ta) / max(tb - ta, 1e-9)
    raise RuntimeError("step window outside the CPU samples")


def rates(run_dir: Path, samples: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Over the in-epoch step windows: steps per wall second, steps per process CPU second, and the
    CPU seconds per step of the training thread and of every other thread (UI, timers, main)."""
    windows = step_windows(run_dir)
    n = sum(w[0] for w in windows)
    wall = sum(t1 - t0 for _, t0, t1 in windows)
    cpu = {tid: sum(cpu_at(s, t1) - cpu_at(s, t0) for _, t0, t1 in windows)
           for tid, s in samples.items() if len(s) > 1 and s[0][0] <= windows[0][1] and s[-1][0] >= windows[-1][2]}
    train = max(cpu.values())
    total = sum(cpu.values())
    return {"wall": n / wall, "cpu": n / total, "train_cpu": train / n, "other_cpu": (total - train) / n}


TICK = os.sysconf("SC_CLK_TCK")
CHILD_ENV = dict(os.environ)


def run_sampled(cmd: list[str], what: str) -> dict[str, list[tuple[float, float]]]:
    """Run cmd, sampling the CPU time (utime+stime) of each of its threads every 20 ms."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=CHILD_ENV)
    samples: dict[str, list[tuple[float, float]]] = {}
    tasks = Path(f"/proc/{proc.pid}/task")
    while proc.poll() is None:
        now = time.time()
        try:
            for task in tasks.iterdir():
                try:
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                samples.setdefault(task.name, []).append((now, (int(fields[11]) + int(fields[12])) / TICK))
        except OSError:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out}\n{err}")
    return samples


def run_cli(preset: Path, out: Path, name: str) -> dict[str, float]:
    """`medcls train --preset FILE` (the CLI's own code path: typer, ConsoleReporter, run_training)."""
    cmd = [sys.executable, "-m", "medcls_tui.cli", "train", "--preset", str(preset), "--output_dir", str(out),
           "--run_name", name]
    return rates(out / name, run_sampled(cmd, "medcls train"))


def run_tui(preset: Path, out: Path, name: str) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tui-child", str(preset), str(out), name]
    return rates(out / name, run_sampled(cmd, "TUI run"))


def tui_child(preset: str, out: str, name: str) -> None:
    """Run the real app headless: picker -> ctrl+t -> wait for the run to end -> quit."""
    sys.path.insert(0, str(REPO))
    os.environ["MEDCLS_PRESET_DIR"] = str(Path(preset).parent)
    from medcls_tui.app import MedclsApp
    from medcls_tui.screens.picker import PickerScreen
    from medcls_tui.tui_settings import AppSettings

    app = MedclsApp(output_dir=out, settings=AppSettings(), initial_preset="bench_tiny")
    state: dict = {}

    async def wait(pilot, cond, timeout=600.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark run did not finish")
            await pilot.pause(0.1)

    async def auto_pilot(pilot) -> None:
        await wait(pilot, lambda: isinstance(app.screen, PickerScreen) and app.screen.is_current
                   and app.screen.resolution is not None and app.screen.resolution.resolved is not None)
        picker = app.screen
        # the run name is a per-run value: set it the way a user would, in the form's flags
        picker.form.extra["run_name"] = name
        picker.request_resolution()
        await wait(pilot, lambda: picker.is_current)
        await pilot.press("ctrl+t")
        await wait(pilot, lambda: app.session is not None)
        session = app.session
        await wait(pilot, lambda: not session.active)
        await wait(pilot, lambda: session.state.finished)  # the timer folded RunFinished in
        state["status"] = session.state.status
        state["redraw_events"] = session.buffer.appended
        app.exit()

    app.run(headless=True, size=(80, 24), auto_pilot=auto_pilot)
    if state.get("status") != "finished":
        raise SystemExit(f"TUI run ended with status {state.get('status')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch/OpenMP threads in both processes (0 = torch default). 1 keeps the CPU "
                             "cost per step free of OpenMP spin-waits when other jobs load the machine")
    parser.add_argument("--tui-child", nargs=3, metavar=("PRESET", "OUT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tui_child:
        tui_child(*args.tui_child)
        return
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            CHILD_ENV[var] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="medcls_tui_bench_") as tmp:
        root = Path(tmp)
        preset = tiny_preset(root / "presets", args.model, args.steps, args.epochs, args.img_size)
        out = root / "runs"
        print(f"tiny run: {args.model}, {args.img_size}px, batch 16, {args.epochs} x {args.steps} steps, "
              f"synthetic data, {os.cpu_count()} CPUs, torch threads {args.threads or 'default'}; "
              f"{args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
        print(f"{'round':>5} {'CLI wall':>9} {'TUI wall':>9} {'ratio':>6}   {'CLI cpu':>8} {'TUI cpu':>8} {'ratio':>6}"
              f"   {'train CPU-ms/step CLI/TUI':>26}   {'other threads CPU-ms/step CLI/TUI':>34}")
        rows = []
        for i in range(1, args.rounds + 1):
            # alternate the order so neither side always runs first
            if i % 2:
                cli = run_cli(preset, out, f"cli-{i}")
                tui = run_tui(preset, out, f"tui-{i}")
            else:
                tui = run_tui(preset, out, f"tui-{i}")
                cli = run_cli(preset, out, f"cli-{i}")
            rows.append((cli, tui))
            print(f"{i:>5} {cli['wall']:>9.2f} {tui['wall']:>9.2f} {tui['wall'] / cli['wall']:>6.3f}   "
                  f"{cli['cpu']:>8.2f} {tui['cpu']:>8.2f} {tui['cpu'] / cli['cpu']:>6.3f}   "
                  f"{1000 * cli['train_cpu']:>12.1f} / {1000 * tui['train_cpu']:<11.1f}   "
                  f"{1000 * cli['other_cpu']:>16.2f} / {1000 * tui['other_cpu']:<15.2f}", flush=True)
        med = statistics.median

        def m(side: int, key: str) -> float:
            return med(r[side][key] for r in rows)

        print(f"median  wall: CLI {m(0, 'wall'):.2f} steps/s, TUI {m(1, 'wall'):.2f} steps/s, "
              f"ratio {med(t['wall'] / c['wall'] for c, t in rows):.3f}   (target >= 0.95)")
        print(f"median  cpu:  CLI {m(0, 'cpu'):.2f} steps/CPU-s, TUI {m(1, 'cpu'):.2f} steps/CPU-s, "
              f"ratio {med(t['cpu'] / c['cpu'] for c, t in rows):.3f}")
        print(f"median  CPU-ms per step: training thread CLI {1000 * m(0, 'train_cpu'):.1f} / TUI "
              f"{1000 * m(1, 'train_cpu'):.1f}; all other threads CLI {1000 * m(0, 'other_cpu'):.2f} / TUI "
              f"{1000 * m(1, 'other_cpu'):.2f} (the TUI's UI thread)")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
