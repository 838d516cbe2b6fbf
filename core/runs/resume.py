"""`--retrain` safety: check the checkpoint before anything in the run folder is written.

A resume that cannot start (no or broken `last.pt`, another model, other classes) must leave
the finished run's record exactly as it was, and must never quietly train from scratch.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Sequence

from core.runs import folder as runs

LAST = "last.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "scaler", "strategy", "strategy_modules", "early_stopping",
                 "position", "micro_splits", "monitor", "rng")
STALE_TMP_RE = re.compile(r"^\..+\.tmp\d*$")
"""Temp names of save_atomic / write_json_atomic: left behind only by a killed write."""


class ResumeError(ValueError):
    """The run cannot be resumed; one line naming the run, the file and what is wrong."""


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / runs.CHECKPOINT_DIR / LAST


def load_resume_state(run_dir: Path) -> dict[str, Any]:
    """last.pt's content, or ResumeError saying why it cannot be used (read-only: writes nothing)."""
    from core.runs.checkpoint import load_checkpoint

    path = last_checkpoint(run_dir)
    where = f"retrain {Path(run_dir).name}: {path}"
    try:
        st = os.stat(path)  # follows a symlink: its target is what would be read
    except FileNotFoundError:
        raise ResumeError(f"{where} is missing, so there is nothing to resume (start a new run without "
                          "--retrain to train from scratch)") from None
    except OSError as err:
        raise ResumeError(f"{where} cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
        raise ResumeError(f"{where} is {kind}; expected the checkpoint file written by medcls")
    if st.st_size == 0:
        raise ResumeError(f"{where} is empty (0 bytes); the run cannot be resumed from it")
    try:
        state = load_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - any unpickling/zip failure means the same to the user
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ResumeError(f"{where} is corrupt or truncated ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ResumeError(f"{where} is not a medcls checkpoint (holds a {type(state).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ResumeError(f"{where} is not a medcls checkpoint (missing {', '.join(missing)})")
    return state


def check_classes(run_dir: Path, state: dict[str, Any], classes: Sequence[str]) -> None:
    saved = state.get("classes")
    if saved is not None and list(saved) != list(classes):
        raise ResumeError(f"retrain {Path(run_dir).name}: the checkpoint was trained on {len(saved)} classes "
                          f"{list(saved)[:6]}, the data now has {len(classes)} {list(classes)[:6]}; "
                          "use the same dataset and labels as the run")


def model_mismatch(run_dir: Path, model: str, err: BaseException) -> ResumeError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return ResumeError(f"retrain {Path(run_dir).name}: the checkpoint does not fit model '{model}' "
                       f"({first}); resume with the run's own --model and --mode")


def clean_stale_tmp(run_dir: Path) -> list[str]:
    """Remove temp files of writes a kill interrupted (checkpoints/.last.pt.tmp123, .summary.json.tmp)."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / runs.CHECKPOINT_DIR):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if STALE_TMP_RE.match(entry.name) and entry.is_file() and not entry.is_symlink():
                try:
                    entry.unlink()
                    removed.append(entry.name)
                except OSError:
                    pass
    return removed


def restore_best_from_last(run_dir: Path, state: dict[str, Any]) -> bool:
    """Write best.pt again from last.pt when a kill came between the two at an epoch end.

    The engine writes last.pt first, then best.pt, so such a kill leaves a run that resumes; last.pt
    then holds the best epoch (its early-stopping record says so) while best.pt is missing or older.
    Both files are the same state at that moment, so a copy of last.pt is exactly the best.pt the
    kill prevented. True when best.pt was rewritten.
    """
    import shutil

    import torch

    pos, early = state.get("position") or {}, state.get("early_stopping") or {}
    if not pos.get("epoch") or pos.get("step_in_epoch") or early.get("best_epoch") != pos.get("epoch"):
        return False
    folder = Path(run_dir) / runs.CHECKPOINT_DIR
    best = folder / BEST
    try:
        held = torch.load(best, map_location="cpu", weights_only=True, mmap=True)["position"]["global_step"]
    except Exception:  # noqa: BLE001 - missing or unreadable: the copy replaces it
        held = None
    if held == pos.get("global_step"):
        return False
    tmp = folder / f".{BEST}.tmp{os.getpid()}"
    try:
        shutil.copyfile(folder / LAST, tmp)
        os.replace(tmp, best)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ResumeError(f"retrain {Path(run_dir).name}: {best} is missing or older than {LAST} (a kill between "
                          f"the two) and cannot be written again ({err.strerror or err})") from None
    return True


def load_for_job(resume_dir: Path, world_size: int) -> dict:
    """last.pt's content if a job of `world_size` processes can resume from it, else ResumeError
    (nothing is written): the epoch's batches and position depend on the process count."""
    state = load_resume_state(resume_dir)
    trained_on = int(state.get("world_size", 1))
    if trained_on != world_size:
        raise ResumeError(
            f"{resume_dir}: trained by {trained_on} process(es), resumed by {world_size}; the "
            f"epoch's batches and position depend on it. Resume with the same count (--gpus {trained_on}, "
            f"or torchrun --nproc_per_node {trained_on})" if trained_on > 1 else
            f"{resume_dir}: trained in one process, resumed by {world_size}; the epoch's "
            "batches and position depend on it. Resume it without --gpus / torchrun")
    return state
