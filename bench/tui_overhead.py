"""TUI overhead: steps/s of the same tiny run under the Textual app (headless) vs `medcls train`.

    uv run python bench/tui_overhead.py [--rounds 3] [--model resnet18] [--steps 30] [--epochs 2]

Both sides run in their own process (same Python, same preset file), interleaved A/B per round so
machine load hits both alike. Steps/s comes from the engine's own `Step` records in metrics.jsonl
(log_every 1), counting only step-to-step intervals inside an epoch, so process start-up, data
generation, model creation and the (identical) validation between epochs are excluded on both sides. The TUI side runs the real app
(picker -> ctrl+t -> live screen redrawing at the default refresh rate) with Textual's headless
driver. Ratio = TUI steps/s / CLI steps/s; target >= 0.95. Prints one table and the median.
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


def steps_per_sec(run_dir: Path) -> tuple[float, int]:
    """Optimizer steps per second inside epochs: consecutive Step records of the same epoch only, so
    validation and checkpoint writes between epochs (identical work on both sides) do not dilute it."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [(r["epoch"], r["global_step"], r["time"]) for r in records if r.get("event") == "Step"]
    n, seconds = 0, 0.0
    for (e0, s0, t0), (e1, s1, t1) in zip(steps, steps[1:]):
        if e0 == e1:
            n += s1 - s0
            seconds += t1 - t0
    if n == 0:
        raise RuntimeError(f"{run_dir}: too few Step records to time")
    return n / seconds, steps[-1][1]


def run_cli(preset: Path, out: Path, name: str) -> float:
    cmd = [sys.executable, "-m", "medcls_tui.cli", "train", "--preset", str(preset), "--output_dir", str(out),
           "--run_name", name]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"medcls train failed:\n{proc.stdout}\n{proc.stderr}")
    return steps_per_sec(out / name)[0]


def run_tui(preset: Path, out: Path, name: str) -> float:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tui-child", str(preset), str(out), name]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"TUI run failed:\n{proc.stdout}\n{proc.stderr}")
    return steps_per_sec(out / name)[0]


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
    parser.add_argument("--tui-child", nargs=3, metavar=("PRESET", "OUT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tui_child:
        tui_child(*args.tui_child)
        return
    with tempfile.TemporaryDirectory(prefix="medcls_tui_bench_") as tmp:
        root = Path(tmp)
        preset = tiny_preset(root / "presets", args.model, args.steps, args.epochs, args.img_size)
        out = root / "runs"
        print(f"tiny run: {args.model}, {args.img_size}px, batch 16, {args.epochs} x {args.steps} steps, "
              f"synthetic data, CPU threads {os.cpu_count()}; {args.rounds} interleaved rounds")
        print(f"{'round':>5} {'medcls train steps/s':>21} {'TUI steps/s':>12} {'ratio':>7}")
        ratios, cli_rates, tui_rates = [], [], []
        for i in range(1, args.rounds + 1):
            # alternate the order so neither side always runs on a warmer/cooler machine
            if i % 2:
                cli = run_cli(preset, out, f"cli-{i}")
                tui = run_tui(preset, out, f"tui-{i}")
            else:
                tui = run_tui(preset, out, f"tui-{i}")
                cli = run_cli(preset, out, f"cli-{i}")
            cli_rates.append(cli)
            tui_rates.append(tui)
            ratios.append(tui / cli)
            print(f"{i:>5} {cli:>21.2f} {tui:>12.2f} {tui / cli:>7.3f}", flush=True)
        print(f"median: medcls train {statistics.median(cli_rates):.2f} steps/s, TUI {statistics.median(tui_rates):.2f} "
              f"steps/s, ratio {statistics.median(ratios):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
