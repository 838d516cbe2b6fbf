"""Run folders: `runs/<name>/` with config.yaml, metrics.jsonl, checkpoints/, summary.json."""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import uuid
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
    check_output_dir(output_dir)
    path = root / name
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    (path / CHECKPOINT_DIR).mkdir(parents=True)
    return path


def check_output_dir(output_dir: str) -> Path:
    """--output_dir must be (or become) a folder: /dev/null or a file is one clear error."""
    root = Path(output_dir).expanduser()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise RunError(f"output_dir: '{output_dir}' is not a folder ({probe} is a file or device); "
                       "give a folder for the run folders")
    return root


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
    """Strict JSON (null, never NaN), written to a temp file of its own and renamed: two writers never
    share a temp file (so never tear one), and a failed write leaves no temp file behind."""
    text = json.dumps(strict_json(data), indent=2, default=_json_default, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_line(record: dict[str, Any]) -> str:
    return json.dumps(strict_json(record), default=_json_default, allow_nan=False)


def read_metrics(run_dir: Path, include_superseded: bool = False) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a torn line (crash mid-write) is ignored.

    Records written after the checkpoint a run was later resumed from describe steps that were
    redone, so they are left out (unless include_superseded): epoch 1 appears once however many
    times the run was killed during epoch 2.
    """
    path = Path(run_dir) / METRICS_FILE
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("event") == "Resumed" and not include_superseded:
            out = _drop_superseded(out, record)
        out.append(record)
    return out


def _drop_superseded(records: list[dict[str, Any]], resumed: dict[str, Any]) -> list[dict[str, Any]]:
    """Cut the records after the last last.pt save at the resumed global step (what the resume redoes)."""
    step = resumed.get("global_step")
    for i in range(len(records) - 1, -1, -1):
        r = records[i]
        if (r.get("event") == "CheckpointSaved" and r.get("global_step") == step
                and str(r.get("path", "")).endswith("last.pt")):
            return records[:i + 1]
    return [r for r in records if not (isinstance(r.get("global_step"), int) and r["global_step"] > (step or 0))]


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
    """summary.json as a dict; {} when missing, binary, not JSON or not an object (a broken file is data)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def run_status(path: Path, summary: dict[str, Any]) -> str:
    """running (a live process holds the lock), interrupted (its process is gone), else the summary's."""
    from core.runs.lock import LOCK_FILE, is_locked

    if is_locked(path):
        return "running"
    if (path / LOCK_FILE).exists():  # left by a process that was killed mid-run
        return "interrupted"
    status = summary.get("status")
    if isinstance(status, str) and status and status != "running":
        return status[:20]
    return "interrupted"


def list_runs(output_dir: str = "runs") -> list[RunInfo]:
    """Runs newest first; status 'running' only while the run's writer is alive (see run_status)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        if not (path / CONFIG_FILE).is_file():
            continue
        s = read_summary(path)
        status = run_status(path, s)
        if status in ("running", "interrupted"):  # summary.json is missing or from before an extension
            s = {**s, **progress_from_metrics(path)}
        mtime = (path / CONFIG_FILE).stat().st_mtime
        monitor = s.get("monitor")
        best_epoch = s.get("best_epoch")
        runs.append(RunInfo(
            name=path.name, path=path, status=status,
            monitor=monitor if isinstance(monitor, str) else None,
            best_value=_number(s.get("best_value")),
            best_epoch=best_epoch if isinstance(best_epoch, int) and not isinstance(best_epoch, bool) else None,
            epochs_completed=_count(s.get("epochs_completed")),
            date=time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime)),
            model=str(s.get("model", ""))[:64], dataset=str(s.get("dataset", ""))[:64],
        ))
    runs.sort(key=lambda r: ((r.path / CONFIG_FILE).stat().st_mtime, r.name), reverse=True)  # as `date` shows
    return runs


_PROGRESS: dict[str, tuple[int, int, dict[str, Any]]] = {}
"""metrics.jsonl path -> (inode, bytes read, progress so far): a live run's file only grows, so the
Runs screen's poll reads what was appended, not the whole file every 2 s."""


def progress_from_metrics(run_dir: Path) -> dict[str, Any]:
    """summary.json's model, dataset, monitor, epochs_completed and best, read from metrics.jsonl: what
    a run still being written (or killed) has done so far. Step records are skipped unparsed."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with path.open("rb") as fh:
            inode = os.fstat(fh.fileno()).st_ino
            ino, offset, out = _PROGRESS.get(str(path), (inode, 0, {}))
            if ino != inode or offset > os.fstat(fh.fileno()).st_size:  # replaced or truncated: start over
                offset, out = 0, {}
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return {}
    complete = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
    out = dict(out)
    for line in complete.decode("utf-8", errors="replace").splitlines():
        if '"StepDone"' in line[:40]:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = record.get("event") if isinstance(record, dict) else None
        if event == "RunStarted" and isinstance(record.get("config"), dict):
            cfg = record["config"]
            out.update({k: cfg[k] for k in ("model", "dataset", "monitor") if isinstance(cfg.get(k), str)})
        elif event == "EpochDone" and isinstance(record.get("epoch"), int):
            out["epochs_completed"] = record["epoch"]
        elif event == "EarlyStopState":
            out.update({k: record.get(k) for k in ("best_value", "best_epoch")})
            if isinstance(record.get("monitor"), str):
                out["monitor"] = record["monitor"]
    _PROGRESS[str(path)] = (inode, offset + len(complete), out)
    return dict(out)
