"""Points 3, 4, 5 and 8 of issue 11: one writer per run, a kill loses at most --checkpoint_every
steps, a --retrain that cannot start leaves the run folder byte-for-byte as it was."""
from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch

from core.runs.folder import list_runs, read_metrics, read_summary

from .conftest import TINY_ARGS, assert_one_line_error, run_cli, run_dir_of, step_records


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file (and symlink target) under a folder with its content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link->" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished 1-epoch run, copied by each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    done = run_cli(root, "train", *TINY_ARGS, "--epochs", "1", "--num_workers", "0", "--output_dir",
                   str(root / "runs"), "--run_name", "done", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "done"


def _copy_run(src: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "runs" / src.name
    shutil.copytree(src, dst, symlinks=True)
    return dst


DAMAGE = {
    "missing": (lambda ck: ck.unlink(), "is missing"),
    "empty": (lambda ck: ck.write_bytes(b""), "is empty"),
    "truncated": (lambda ck: ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2]), "corrupt or truncated"),
    "garbage": (lambda ck: ck.write_bytes(os.urandom(4096)), "corrupt or truncated"),
    "directory": (lambda ck: (ck.unlink(), ck.mkdir()), "is a folder"),
    "dev_zero": (lambda ck: (ck.unlink(), ck.symlink_to("/dev/zero")), "not a regular file"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_retrain_with_unusable_checkpoint_is_one_line_and_changes_nothing(finished_run, tmp_path, damage):
    run = _copy_run(finished_run, tmp_path)
    action, needle = DAMAGE[damage]
    action(run / "checkpoints" / "last.pt")
    before = _snapshot(run)
    done = run_cli(tmp_path, "train", "--retrain", "done", "--output_dir", str(tmp_path / "runs"), "--epochs", "2")
    assert_one_line_error(done, 2, "last.pt", needle)
    assert _snapshot(run) == before  # best.pt, summary.json, metrics.jsonl untouched
    assert read_summary(run)["status"] == "finished"


@pytest.mark.parametrize("flags,needle", [
    (("--model", "resnet34"), "does not fit model 'resnet34'"),
    (("--synthetic_task", "binary"), "classes"),
])
def test_retrain_with_another_model_or_classes_changes_nothing(finished_run, tmp_path, flags, needle):
    run = _copy_run(finished_run, tmp_path)
    before = _snapshot(run)
    done = run_cli(tmp_path, "train", "--retrain", "done", "--output_dir", str(tmp_path / "runs"), "--epochs", "2",
                   *flags)
    assert_one_line_error(done, 2, needle)
    assert _snapshot(run) == before


@pytest.mark.processes
def test_kill_loses_at_most_checkpoint_every_steps_and_the_lock_guards_the_run(tmp_path, train_process):
    out = tmp_path / "runs"
    args = (*TINY_ARGS, "--epochs", "500", "--num_workers", "0", "--output_dir", str(out), "--run_name", "r")
    proc = train_process(*args, "--checkpoint_every", "2")
    run = proc.wait_for(lambda: (d := run_dir_of(out)) is not None and len(step_records(d)) >= 5 and d,
                        "five training steps")
    # a second writer while the first trains: one line naming the holder, nothing written by it
    assert list_runs(str(out))[0].status == "running"
    second = run_cli(tmp_path, "train", "--retrain", "r", "--output_dir", str(out), timeout=600)
    assert_one_line_error(second, 2, "being written by another process", f"pid {proc.proc.pid}")

    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.finish()
    last_logged = max(r["global_step"] for r in step_records(run))
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert last_logged - saved["position"]["global_step"] <= 2  # --checkpoint_every 2
    assert list_runs(str(out))[0].status == "interrupted"  # process gone, stale lock left behind
    (run / "checkpoints" / ".last.pt.tmp99999").write_bytes(b"x" * 1000)  # a killed write's leftover

    end = saved["position"]["epoch"] + 1  # finish the epoch the kill interrupted
    resumed = run_cli(tmp_path, "train", "--retrain", "r", "--output_dir", str(out), "--epochs", str(end),
                      timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(run)["status"] == "finished"
    assert not list((run / "checkpoints").glob(".*tmp*")) and not (run / "run.lock").exists()
    epochs = [r["epoch"] for r in read_metrics(run) if r.get("event") == "EpochDone"]
    assert epochs == list(range(1, end + 1))  # records of redone steps are superseded, each epoch seen once
    steps = [r["global_step"] for r in read_metrics(run) if r.get("event") == "Step"]
    assert steps == sorted(set(steps))


def test_time_based_checkpoint_default(tmp_path, tiny_flags):
    """Without --checkpoint_every a mid-epoch last.pt is written every checkpoint_minutes."""
    from core.config import TrainConfig
    from core.training.trainer import Trainer
    from core.events import CheckpointSaved
    from core.config.resolve import resolve_config

    assert TrainConfig().checkpoint_every is None and TrainConfig().checkpoint_minutes == 10.0
    saved = []
    resolved = resolve_config({**tiny_flags, "epochs": 1, "checkpoint_minutes": 1e-9}, vram_gib=None)
    Trainer(resolved, on_event=lambda e: saved.append(e) if isinstance(e, CheckpointSaved) else None).fit()
    periodic = [e for e in saved if e.reason == "periodic"]
    assert periodic and all(e.global_step < 6 for e in periodic)  # mid-epoch (6 steps per epoch here)
