"""Generated hostile inputs for `medcls eval | predict | explain | export` (issue 24), run through the real
CLI in-process on one tiny trained run. Each case expects one `error:` line and exit 2; it is counted as

- a traceback: an exception escaped the CLI, or "Traceback" was printed;
- a hang: no answer within HANG_S (a SIGALRM ends the case);
- silent wrong: exit 0 where an error was expected, or the run folder changed, or an output (or its
  `.tmp`) was left behind by a refused command;
- unclear: exit 2 but not exactly one `error:` line naming what the case broke.

Used by bench/reliability.py (`--after N`).
"""
from __future__ import annotations

import json
import math
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANG_S = 60
MODELS = ("resnet34", "resnet50", "efficientnet_b0", "densenet121", "mobilenetv3_small_100", "convnext_atto")
BAD_THRESHOLDS = (math.nan, math.inf, -math.inf, -5, 7.0, True, "0.5", "abc", {"a": 1}, [0.5])


class _Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Hang()


def _cases(rng: random.Random, n: int) -> list[tuple[str, dict]]:
    weights = {"checkpoint": 7, "config": 2, "output": 7, "csv": 4, "device": 3, "arguments": 4, "thresholds": 4}
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=n)
    return [(k, {"seed": rng.randrange(2**31)}) for k in kinds]


def _setup(category: str, seed: int, trained: Path, work: Path, at) -> tuple[list[str], tuple[str, ...], Path]:
    """(argv, needles the error line must hold, the run folder that must not change)."""
    rng = random.Random(seed)
    image = at.an_image(work / "a.png", seed)
    run = at.clone_run(trained, work / "runs" / "x")
    command = rng.choice(at.COMMANDS)
    if category == "checkpoint":
        kind = rng.choice(at.CHECKPOINT_KINDS + ("random_bytes", "random_cut"))
        real = (trained / "checkpoints" / "best.pt").read_bytes()
        if kind == "random_bytes":
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 5000)))
        elif kind == "random_cut":
            data = real[:rng.randrange(0, len(real))]
        else:
            data = at.broken_checkpoints(real, work / "code_ran")[kind]
        at.replace_file(run / "checkpoints" / "best.pt", data)
        return at.command_args(command, run, image, work), ("best.pt",), run
    if category == "config":
        text = (run / "config.yaml").read_text()
        if rng.random() < 0.7:
            model = rng.choice(MODELS)
            (run / "config.yaml").write_text(text.replace("model: resnet18", f"model: {model}"))
            return at.command_args(command, run, image, work), (model,), run
        (run / "config.yaml").write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        return at.command_args(command, run, image, work), ("config.yaml",), run
    if category == "output":
        command, suffix = rng.choice([("predict", ".csv"), ("explain", ".png"), ("export", ".pt")])
        kind = rng.choice(at.OUTPUT_KINDS + ("wrong_suffix", "cam_file", "cam_under_file"))
        args = at.command_args(command, run, image, work)
        if kind == "wrong_suffix":  # predict has none: an explicit --format wins over --out's suffix (issue 23)
            command = "explain" if command == "predict" else command
            args = at.command_args(command, run, image, work)
            bad = {"explain": work / "e.txt", "export": work / "m.json"}[command]
            return [*args[:-1], str(bad)], ("--out",), run
        if kind.startswith("cam_"):
            (work / "afile").write_text("x")
            cam = work / "afile" / ("" if kind == "cam_file" else "cams")
            return [*at.command_args("predict", run, image, work), "--cam", str(cam)], ("--cam",), run
        target, needle = at.output_target(kind, work, run, suffix)
        return [*args[:-1], str(target)], ("--out", needle), run
    if category == "csv":
        body = b"path\n" + b"".join(f"img{i}.png\n".encode() for i in range(rng.randrange(0, 5)))
        flaw = rng.choice(["latin1", "nul", "huge"])
        if flaw == "latin1":
            body += rng.choice(["é", "ß", "ñ", "ü"]).encode("latin-1") + b".png\n"
        elif flaw == "nul":
            at_ = rng.randrange(len(body) + 1)
            body = body[:at_] + b"\x00" + body[at_:]
        else:
            body += b'"' + b"x" * rng.randrange(131_073, 400_000) + b'"\n'
        (work / "list.csv").write_bytes(body)
        return ["predict", str(run), str(work / "list.csv"), "--out", str(work / "p.csv")], ("list.csv",), run
    if category == "device":
        device = rng.choice(["tpu", "gpu", "cuda:x", "cuda:-1", "", "CPU0", "mps!", "xla",
                             "".join(rng.choice("abcxyz:019") for _ in range(rng.randrange(1, 8)))])
        if device in ("cpu", "auto", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
            device = "tpu"
        command = rng.choice(["eval", "predict"])
        return [*at.command_args(command, run, image, work), "--device", device], ("device",), run
    if category == "arguments":
        word = "".join(rng.choice("abcdefgxyz") for _ in range(rng.randrange(1, 9)))
        choice = rng.randrange(5)
        if choice == 0:
            return ["eval", str(run), "--split", word], ("split",), run
        if choice == 1:
            return ["eval", str(run), "--bootstrap", str(rng.randrange(10_001, 10**15))], ("--bootstrap",), run
        if choice == 2:
            return ["eval", str(run), "--thresholds", word], ("threshold method",), run
        if choice == 3:
            value = rng.choice([0.0, -0.5, 1.5, 100.0, -1e9])
            return ["eval", str(run), "--sensitivity", str(value)], ("--sensitivity",), run
        return ["explain", str(run), str(image), "--class", word + "Q"], ("class",), run
    if category == "thresholds":
        path = run / "thresholds.json"
        data = json.loads(path.read_text())
        flaw = rng.choice(["value", "value", "value", "not_utf8", "folder", "nested"])
        # format 2 keeps one entry per checkpoint ({"checkpoints": {"best": {"thresholds": ...}}}); format 1 one
        entry = data["checkpoints"]["best"] if "checkpoints" in data else data
        if flaw == "value":
            cls = rng.choice(sorted(entry["thresholds"]))
            entry["thresholds"][cls] = rng.choice(BAD_THRESHOLDS)
            path.write_text(json.dumps(data))  # json writes NaN/Infinity tokens, as a hand edit might
        elif flaw == "not_utf8":
            path.write_bytes(b'{"thresholds": {"Normal": 0.5, "Abn\xe9rmal": 0.5}}')
        elif flaw == "folder":
            path.unlink()
            path.mkdir()
        else:
            entry["thresholds"] = {"Normal": {"value": 0.5}}
            path.write_text(json.dumps(data))
        command = rng.choice(["eval", "predict", "predict", "export", "export"])
        return at.command_args(command, run, image, work), ("thresholds.json",), run
    raise AssertionError(category)


def _judge(result, needles, run_before, run: Path, work: Path, at, elapsed: float) -> str:
    if result.exception is not None and not isinstance(result.exception, SystemExit) or \
            "Traceback" in result.output:
        return "tracebacks"
    if result.exit_code == 0 or at.snapshot(run) != run_before or (work / "code_ran").exists():
        return "silent_wrong"
    left = {p.name for p in work.iterdir()} & {"p.csv", "p.json", "e.png", "e.txt", "m.pt", "m.pt.json", "m.json"}
    if left or list(work.glob(".*.tmp*")):
        return "silent_wrong"
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if result.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or \
            not all(n in lines[0] for n in needles):
        return "unclear"
    return "ok"


def run_cases(n: int, seed: int = 0, verbose: bool = False) -> dict[str, dict[str, int]]:
    """Train one tiny run, then n generated cases; counts per category."""
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from typer.testing import CliRunner

    from medcls_tui.cli import app
    from reliability import test_after_training_inputs as at

    torch.set_num_threads(1)
    runner = CliRunner()
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples: dict[str, list[str]] = defaultdict(list)
    old = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as tmp:
        trained = at.train_tiny_run(Path(tmp) / "trained")
        for i, (category, params) in enumerate(_cases(random.Random(seed), n)):
            work = Path(tmp) / f"case{i}"
            work.mkdir()
            argv, needles, run = _setup(category, params["seed"], trained, work, at)
            before = at.snapshot(run)
            t0 = time.monotonic()
            signal.alarm(HANG_S)
            try:
                result = runner.invoke(app, argv)
                outcome = _judge(result, needles, before, run, work, at, time.monotonic() - t0)
            except _Hang:
                outcome, result = "hangs", None
            finally:
                signal.alarm(0)
            stats[category]["tried"] += 1
            stats[category][outcome] += 1
            if outcome != "ok" and len(examples[category]) < 3:
                tail = (result.stderr.strip().splitlines() or [f"exit {result.exit_code}"])[-1] if result else "hang"
                examples[category].append(f"{outcome}: {' '.join(argv[:1] + argv[2:])[:160]} -> {tail[:200]}")
            if verbose:
                print(i, category, outcome, flush=True)
            shutil.rmtree(work, ignore_errors=True)
    signal.signal(signal.SIGALRM, old)
    return {k: {**v, "examples": examples[k]} for k, v in stats.items()}
