"""Run folders: `runs/<name>/` with config.yaml, metrics.jsonl, checkpoints/, summary.json."""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped_images.txt"
CHECKPOINT_DIR = "checkpoints"


class RunError(ValueError):
    pass


def check_run_name(name: str) -> str:
    """Run names are plain folder names: no separators, no '..', so nothing escapes output_dir."""
    if not RUN_NAME_RE.match(name) or ".." in name:
        raise RunError(f"run_name: '{name}' must be letters, digits, '.', '_' or '-' (no '/' or '..'), at most 128 chars")
    return name


def default_run_name(model: str, dataset: str, mode: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    short = {"linear_probe": "lp", "full_finetune": "ft"}.get(mode, mode)
    return check_run_name(re.sub(r"[^A-Za-z0-9._-]", "_", f"{model}-{dataset}-{short}-{stamp}"))


def new_run_dir(output_dir: str, run_name: str) -> Path:
    """Create a fresh run folder; an existing name gets a numeric suffix instead of being overwritten."""
    root = Path(output_dir)
    name = check_run_name(run_name)
    path = root / name
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    (path / CHECKPOINT_DIR).mkdir(parents=True)
    return path


def find_run_dir(run: str, output_dir: str = "runs") -> Path:
    """`--retrain X`: X is a run folder path, or a run name under output_dir."""
    p = Path(run)
    for candidate in (p, Path(output_dir) / run):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise RunError(f"retrain: no run folder '{run}' (looked for {p / CONFIG_FILE} and {Path(output_dir) / run / CONFIG_FILE})")


def strict_json(obj: Any) -> Any:
    """A copy with NaN/inf floats (and 0-d tensors holding them) as None, so the file is strict JSON."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Strict JSON (null, never NaN), written to a temp file and renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(strict_json(data), indent=2, default=_json_default, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_line(record: dict[str, Any]) -> str:
    return json.dumps(strict_json(record), default=_json_default, allow_nan=False)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of metrics.jsonl; a torn last line (crash mid-write) is ignored."""
    path = Path(run_dir) / METRICS_FILE
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass
class RunInfo:
    name: str
    path: Path
    status: str
    monitor: Optional[str]
    best_value: Optional[float]
    best_epoch: Optional[int]
    epochs_completed: int
    date: str
    model: str = ""
    dataset: str = ""


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def list_runs(output_dir: str = "runs") -> list[RunInfo]:
    """Runs newest first; a run without summary.json is 'running' or was killed ('incomplete')."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        if not (path / CONFIG_FILE).is_file():
            continue
        s = read_summary(path)
        mtime = (path / CONFIG_FILE).stat().st_mtime
        status = s.get("status") or ("incomplete" if (path / CHECKPOINT_DIR / "last.pt").exists() else "running")
        runs.append(RunInfo(
            name=path.name, path=path, status=status, monitor=s.get("monitor"),
            best_value=s.get("best_value"), best_epoch=s.get("best_epoch"),
            epochs_completed=int(s.get("epochs_completed", 0) or 0),
            date=time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime)),
            model=str(s.get("model", "")), dataset=str(s.get("dataset", "")),
        ))
    runs.sort(key=lambda r: r.path.stat().st_mtime, reverse=True)
    return runs
