"""Reliability bench (issue 11): repeated SIGKILLs of a real `medcls train` with resume, and
generated bad inputs by category. Prints kills survived, steps lost at most, tracebacks and hangs.

    uv run python bench/reliability.py [--kills 4] [--inputs 200] [--after 300] (0 skips a part)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = ["--dataset", "synthetic", "--model", "resnet18", "--img_size", "32", "--synthetic_size", "96",
        "--batch_size", "8", "--log_every", "1", "--device", "cpu", "--num_workers", "0", "--no_pretrained"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from medcls_tui.cli import main; main()", *args]


def _steps(run: Path) -> list[int]:
    out = []
    path = run / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("event") == "Step":
                out.append(r["global_step"])
    return out


def kills(n: int, every: int, root: Path) -> dict:
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = root / "runs"
    run = out / "k"
    lost, survived = [], 0
    rng = random.Random(0)
    for i in range(n):
        args = ["--retrain", "k", "--output_dir", str(out), "--epochs", "500"] if i else \
            [*TINY, "--epochs", "500", "--output_dir", str(out), "--run_name", "k", "--checkpoint_every", str(every)]
        proc = subprocess.Popen(_cmd("train", *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=root)
        start = len(_steps(run))
        target = start + rng.randint(3, 15)
        while len(_steps(run)) < target and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"kill {i}: process ended on its own (rc {proc.returncode}): {proc.stderr.read()[-500:]}")
        saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
        lost.append(max(_steps(run)) - saved["position"]["global_step"])
        survived += 1 if i else 0
    end = saved["position"]["epoch"] + 1
    done = subprocess.run(_cmd("train", "--retrain", "k", "--output_dir", str(out), "--epochs", str(end)), env=env,
                          capture_output=True, text=True, cwd=root)
    survived += done.returncode == 0 and json.loads((run / "summary.json").read_text())["status"] == "finished"
    return {"kills": n, "resumes_ok": survived, "steps_lost_max": max(lost), "steps_lost": lost,
            "checkpoint_every": every}


def bad_inputs(n: int) -> dict:
    from hypothesis import given, settings, HealthCheck

    sys.path.insert(0, str(REPO / "tests"))
    from reliability import test_fuzz as fz

    results = {}
    for name, strategy, check in (("config dicts", fz.config_dicts, fz._check_config),
                                  ("YAML texts", fz.yaml_texts, fz._check_yaml)):
        results[name] = _count_outcomes(strategy, check, n, settings, given, HealthCheck)
    return results


def _count_outcomes(strategy, check, n: int, settings, given, HealthCheck) -> dict:
    """Run `check` on n generated values; count tracebacks and calls over 10 s (hangs)."""
    stats = {"tried": 0, "tracebacks": 0, "hangs": 0}

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def run(value):
        stats["tried"] += 1
        t0 = time.monotonic()
        try:
            check(value)
        except Exception:  # noqa: BLE001 - counted
            stats["tracebacks"] += 1
        if time.monotonic() - t0 > 10:
            stats["hangs"] += 1

    run()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--after", type=int, default=300, help="generated cases for eval/predict/explain/export")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    if a.kills:
        with tempfile.TemporaryDirectory() as tmp:
            k = kills(a.kills, a.every, Path(tmp))
        print(f"SIGKILLs: {k['kills']}, resumes that continued/finished: {k['resumes_ok']}/{k['kills']}, steps "
              f"lost at most {k['steps_lost_max']} (--checkpoint_every {k['checkpoint_every']}; per kill {k['steps_lost']})")
    if a.inputs:
        for name, s in bad_inputs(a.inputs).items():
            print(f"{name}: {s['tried']} tried, tracebacks {s['tracebacks']}, hangs {s['hangs']}")
    if a.after:
        after_training(a.after, a.seed)


def after_training(n: int, seed: int) -> None:
    """Issue 24: n generated hostile inputs to eval/predict/explain/export (see bench/after_training_cases.py)."""
    sys.path.insert(0, str(REPO / "bench"))
    from after_training_cases import run_cases

    stats = run_cases(n, seed)
    keys = ("tracebacks", "hangs", "silent_wrong", "unclear")
    total = {k: sum(s.get(k, 0) for s in stats.values()) for k in ("tried", *keys)}
    print(f"after-training commands: {total['tried']} generated cases (seed {seed}): "
          + ", ".join(f"{k} {total[k]}" for k in keys))
    for name, s in sorted(stats.items()):
        print(f"  {name}: {s['tried']} tried, " + ", ".join(f"{k} {s.get(k, 0)}" for k in keys))
        for example in s["examples"]:
            print(f"    {example}")


if __name__ == "__main__":
    main()
