"""Point 2 of issue 11: SIGINT/SIGTERM/SIGHUP are a graceful stop (checkpoint + `status: stopped`),
a second signal aborts at once with `status: aborted` in the summary, never SIGABRT; loader workers
do not turn one Ctrl-C into a failed run."""
from __future__ import annotations

import json
import signal

import pytest
import torch

from core.runs.folder import list_runs, read_summary

pytestmark = pytest.mark.processes  # real processes and signals: minutes, run by .ci/run

from .conftest import TINY_ARGS, run_cli, run_dir_of, step_records


def _stopped_cleanly(proc, run_dir) -> dict:
    """The process exited 0 with no abort or traceback, and its summary says `stopped`."""
    rc = proc.finish()
    text = proc.output()
    assert rc == 0, text[-3000:]
    assert "terminate called" not in text and "Traceback" not in text, text[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "stopped", summary
    return summary


def _started(proc, out):
    return proc.wait_for(lambda: (d := run_dir_of(out)) is not None and len(step_records(d)) >= 2 and d,
                         "two training steps")


@pytest.mark.parametrize("sig,workers,group", [
    (signal.SIGINT, "0", False),
    (signal.SIGINT, "2", True),   # Ctrl-C in a terminal: the whole process group, loader workers included
    (signal.SIGTERM, "0", False),
    (signal.SIGHUP, "2", True),
])
def test_one_signal_stops_after_the_step_with_checkpoint_and_summary(tmp_path, train_process, sig, workers, group):
    out = tmp_path / "runs"
    proc = train_process(*TINY_ARGS, "--epochs", "50", "--num_workers", workers, "--output_dir", str(out))
    run_dir = _started(proc, out)
    (os_kill := __import__("os").killpg if group else __import__("os").kill)(proc.proc.pid, sig)
    summary = _stopped_cleanly(proc, run_dir)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert state["position"]["global_step"] == summary["global_step"] >= 2
    assert list_runs(str(out))[0].status == "stopped"
    assert not (run_dir / "run.lock").exists()


def test_second_signal_aborts_at_once_and_says_so(tmp_path, train_process):
    import os

    out = tmp_path / "runs"
    proc = train_process(*TINY_ARGS, "--epochs", "50", "--num_workers", "0", "--output_dir", str(out))
    run_dir = _started(proc, out)
    os.kill(proc.proc.pid, signal.SIGTERM)  # two different signals: never merged into one by the kernel
    os.kill(proc.proc.pid, signal.SIGINT)
    rc = proc.finish()
    text = proc.output()
    assert rc == 130, text[-3000:]
    assert "terminate called" not in text and "Traceback" not in text, text[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "aborted" and "second interrupt" in summary["error"]
    assert list_runs(str(out))[0].status == "aborted"


def test_stopped_run_resumes_to_the_end(tmp_path, train_process):
    import os

    out = tmp_path / "runs"
    proc = train_process(*TINY_ARGS, "--epochs", "50", "--num_workers", "0", "--output_dir", str(out),
                         "--run_name", "r")
    run_dir = _started(proc, out)
    os.kill(proc.proc.pid, signal.SIGINT)
    assert proc.finish() == 0
    stopped = read_summary(run_dir)
    stopped_at = stopped["global_step"]
    end = str(stopped["epochs_completed"] + 1)  # finish the epoch the signal interrupted
    done = run_cli(tmp_path, "train", "--retrain", "r", "--output_dir", str(out), "--epochs", end, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "finished" and summary["global_step"] > stopped_at


@pytest.mark.parametrize("workers,group", [("0", False), ("2", True)])
def test_signal_during_validation_finishes_it_then_stops_with_the_epoch_checkpoint(tmp_path, train_process,
                                                                                     workers, group):
    """One training step per epoch and a large validation split: the signal sent as soon as step 1 is
    logged lands while the epoch's validation runs. Validation completes, the epoch is recorded and
    checkpointed, and the run stops there (no SIGABRT from loader workers, no lost epoch)."""
    import os

    out = tmp_path / "runs"
    args = [a for a in TINY_ARGS]
    args[args.index("--synthetic_size") + 1] = "3000"  # ~600 validation images: seconds of validation
    proc = train_process(*args, "--epochs", "50", "--max_steps_per_epoch", "1", "--num_workers", workers,
                         "--output_dir", str(out))
    run_dir = proc.wait_for(lambda: (d := run_dir_of(out)) is not None and len(step_records(d)) >= 1 and d,
                            "the first step (validation follows at once)")
    (os.killpg if group else os.kill)(proc.proc.pid, signal.SIGINT)
    summary = _stopped_cleanly(proc, run_dir)
    assert summary["epochs_completed"] == 1 and summary["global_step"] == 1, summary
    from core.runs.folder import read_metrics

    epochs = [r for r in read_metrics(run_dir) if r.get("event") == "EpochDone"]
    assert [r["epoch"] for r in epochs] == [1] and epochs[0]["metrics"]["val_auroc"] is not None
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert state["position"]["epoch"] == 1 and state["position"]["global_step"] == 1
