"""Start-up: process wall time to the app's first screen, `medcls presets list` and `--print-config`.

    uv run python bench/startup.py [--rounds 5] [--before /work/main]

Each command runs in a fresh Python process (same interpreter and packages), so the time includes
the interpreter, every import and the command's own work: what a user waits for. "before" runs the
same commands on another checkout of the code (default /work/main, put first on sys.path), "after"
on this one; rounds alternate before/after so load from other jobs hits both alike. Prints the
median of each and the ratio before/after (higher = faster now), plus the machine's load average,
and for the first screen also the process's own CPU time (user + system) up to that moment.

The first screen: the app runs with Textual's headless driver and exits as soon as it is ready
(the picker mounted with its preset list: what the terminal shows first). The child process also
reports whether torch was imported by then.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_TIMES: dict[str, list[float]] = {}
"""CPU seconds (user + system) of the app's process up to its first screen, per checkout."""

FIRST_SCREEN = """
import os, sys, time
from medcls_tui.app import MedclsApp

async def first_screen(pilot):
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(usage.ru_utime + usage.ru_stime, flush=True)
    print(time.time(), flush=True)
    print("torch" in sys.modules, file=sys.stderr, flush=True)
    os._exit(0)  # the time is taken; workers still importing in the background do not matter

MedclsApp(output_dir=sys.argv[1]).run(headless=True, size=(80, 24), auto_pilot=first_screen)
"""
CLI = """
import sys
from medcls_tui.cli import app
try:
    app(args=sys.argv[1:])
except SystemExit:
    pass
print("torch" in sys.modules, file=sys.stderr)
"""
COMMANDS = {
    "first screen": (FIRST_SCREEN, ["{runs}"]),
    "presets list": (CLI, ["presets", "list"]),
    "--print-config": (CLI, ["train", "--preset", "demo", "--print-config"]),
}


def run_once(code: str, args: list[str], checkout: Path, runs: str) -> tuple[float, bool]:
    env = dict(os.environ, PYTHONPATH=str(checkout), MEDCLS_PRESET_DIR=runs + "_presets")
    start, wall_start = time.perf_counter(), time.time()
    proc = subprocess.run([sys.executable, "-c", code, *[a.format(runs=runs) for a in args]], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: {args} failed:\n{proc.stderr[-2000:]}")
    if code is FIRST_SCREEN:  # the child printed its CPU time and the moment the screen was ready
        cpu, ready = proc.stdout.strip().splitlines()[-2:]
        elapsed = float(ready) - wall_start
        CPU_TIMES.setdefault(str(checkout), []).append(float(cpu))
    return elapsed, proc.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default="/work/main", help="checkout to compare with")
    parser.add_argument("--only", nargs="*", default=list(COMMANDS), help="commands to time")
    args = parser.parse_args()
    sides = {"before": Path(args.before).resolve(), "after": REPO}
    for name in set(COMMANDS) - set(args.only):
        del COMMANDS[name]
    times: dict[tuple[str, str], list[float]] = {}
    torch_loaded: dict[tuple[str, str], bool] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f}  cpus: {os.cpu_count()}  python: {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = str(Path(tmp) / "runs")
        for rnd in range(args.rounds):
            order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
            for name, (code, cmd_args) in COMMANDS.items():
                for side in order:
                    elapsed, loaded = run_once(code, cmd_args, sides[side], runs)
                    times.setdefault((name, side), []).append(elapsed)
                    torch_loaded[(name, side)] = loaded
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"{'command':<16} {'before s':>9} {'after s':>9} {'before/after':>13}  torch imported (before/after)")
    for name in COMMANDS:
        before = statistics.median(times[(name, "before")])
        after = statistics.median(times[(name, "after")])
        print(f"{name:<16} {before:>9.2f} {after:>9.2f} {before / after:>12.1f}x  "
              f"{torch_loaded[(name, 'before')]}/{torch_loaded[(name, 'after')]}")
    if CPU_TIMES:
        before, after = (statistics.median(CPU_TIMES[str(sides[s])]) for s in ("before", "after"))
        print(f"{'first screen CPU':<16} {before:>9.2f} {after:>9.2f} {before / after:>12.1f}x  "
              "(the process's own CPU seconds, user + system: less sensitive to other jobs)")


if __name__ == "__main__":
    main()
