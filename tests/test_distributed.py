"""Several processes, one run (issue 18): torchrun / `medcls train --gpus N`, on CPU with gloo.

Fast here: the sharding of the seeded epoch order, the launch command, --print-config, signals, and
one real 2-process gloo job scoring the val split through the engine (gathered AUROC == one process).
Marked `processes` (minutes on 2 shared cores; `.ci/run` runs them): real `medcls train --gpus 2
--device cpu` jobs: same loss trajectory as one process with the global batch, one run folder and
checkpoint, the app following the run, a kill then `--retrain` landing at the same step.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO, TINY

from core.training.distributed import shard_batches, shard_bounds, shard_sizes
from core.training.loader import epoch_batches

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the seeded epoch order, sharded
def test_ranks_split_each_global_batch_of_the_same_permutation():
    """Rank r's batches are the r-th slice of every global batch: together, in rank order, exactly the
    batches one process with the global batch takes, so a position (optimizer step) means the same sample
    on every rank and in a plain run."""
    world, per_rank = 3, 4
    global_batches = epoch_batches(50, per_rank * world, seed=7, epoch=2, shuffle=True, drop_last=True)
    shards = [shard_batches(global_batches, r, world) for r in range(world)]
    assert all(len(s) == len(global_batches) for s in shards)
    for step, batch in enumerate(global_batches):
        assert sum((shards[r][step] for r in range(world)), []) == batch
        assert all(len(shards[r][step]) == per_rank for r in range(world))
    assert shard_batches(global_batches, 0, 1) == global_batches


def test_a_ragged_or_tiny_global_batch_still_gives_every_rank_samples():
    assert [len(b) for b in shard_batches([[1, 2, 3, 4, 5]], 0, 2)] == [3]
    assert shard_batches([[1, 2, 3, 4, 5]], 1, 2) == [[4, 5]]
    assert [shard_batches([[9]], r, 2) for r in range(2)] == [[[9]], [[9]]]  # no rank steps with nothing
    assert shard_sizes(7, 2) == [4, 3] and shard_bounds(7, 1, 2) == (4, 7)


# ---------------------------------------------------------------- a real gloo job, 2 ranks
@pytest.fixture
def spawned(request):
    """torch.multiprocessing contexts started by a test, always joined or terminated at the end."""
    contexts = []
    yield contexts
    for ctx in contexts:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
            proc.join(30)


def test_gather_drops_the_padding_of_uneven_shards_across_two_gloo_ranks(tmp_path, spawned):
    """A real 2-process gloo job (no engine, so it stays short): each rank gathers 6 and 5 rows; every
    rank gets the unsharded predictions in order and the single-process AUROC; a flag raised on one
    rank (a stop request) is agreed by both."""
    import torch
    import torch.multiprocessing as mp

    from core.training.val_metrics import classification_metrics
    from dist_workers import fixed_predictions, gather_rank

    ctx = mp.start_processes(gather_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    spawned.append(ctx)
    while not ctx.join(timeout=300):
        pass
    logits, targets = fixed_predictions()
    expected = classification_metrics(logits, targets, ["a", "b", "c"], False)["val_auroc"]
    for rank in range(2):
        got = torch.load(tmp_path / f"gather{rank}.pt", weights_only=True)
        assert torch.equal(got["logits"], logits) and torch.equal(got["targets"], targets)
        gathered = classification_metrics(got["logits"], got["targets"], ["a", "b", "c"], False)["val_auroc"]
        assert gathered == pytest.approx(expected, abs=1e-12)
        assert got["agreed"] == [True, False]


@pytest.mark.processes
def test_two_ranks_gather_the_val_predictions_and_score_them_as_one_process(tmp_path, spawned, one_torch_thread):
    """Each rank scores its shard of a val split that does not divide evenly (padding for the gather);
    the gathered logits are the single process's, in the same order, so AUROC, accuracy and val_loss
    are the same."""
    import torch
    import torch.multiprocessing as mp

    from dist_workers import evaluate_rank

    flags = {**TINY, "synthetic_size": 72, "output_dir": str(tmp_path / "runs")}
    ctx = mp.start_processes(evaluate_rank, args=(2, free_port(), flags, str(tmp_path)), nprocs=2,
                             join=False, start_method="spawn")
    spawned.append(ctx)
    while not ctx.join(timeout=300):
        pass

    import core.training.validation as engine  # validation scores the val split
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    single = Trainer(resolve_config(flags, vram_gib=None))
    single._setup()
    seen = {}
    original = engine.classification_metrics

    def recording(logits, targets, *args, **kwargs):
        seen.update(logits=logits, targets=targets)
        return original(logits, targets, *args, **kwargs)

    engine.classification_metrics = recording
    try:
        expected = single.evaluate(single.val_ds)
    finally:
        engine.classification_metrics = original
    assert len(single.val_ds) % 2 == 1  # uneven shards: the padding must be dropped again

    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["world"] == 2 and got["backend"] == "gloo" and got["n_val"] == len(single.val_ds)
        scored = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(scored["targets"], seen["targets"])
        assert torch.allclose(scored["logits"], seen["logits"], atol=1e-5)
        assert got["metrics"]["val_auroc"] == pytest.approx(expected["val_auroc"], abs=1e-6)
        assert got["metrics"]["val_acc"] == pytest.approx(expected["val_acc"], abs=1e-9)
        assert got["metrics"]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)


# ---------------------------------------------------------------- the CLI: --gpus, --print-config
def test_print_config_shows_per_rank_and_global_batch_and_the_lr_rule():
    from medcls_tui.cli import app

    result = runner.invoke(app, ["train", "--model", "resnet18", "--batch_size", "32", "--grad_accum_steps", "2",
                                 "--lr", "0.001", "--gpus", "4", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "batch: 32 per GPU x 4 processes x 2 accumulation = global batch 256" in result.output
    assert "lr rule: the tips' LR 0.001 is used as is for the global batch 256" in result.output
    assert "linear scaling would give 0.004" in result.output
    one = runner.invoke(app, ["train", "--model", "resnet18", "--batch_size", "32", "--print-config"])
    assert "batch: 32 x 1 accumulation = effective batch 32 (one process" in one.output


def test_gpus_relaunches_the_same_command_through_torch_distributed_run(monkeypatch, tmp_path):
    """--gpus N starts `python -m torch.distributed.run ... -m medcls_tui train` with the flags as given
    (no shell); without --gpus (or --gpus 1) nothing is relaunched."""
    from medcls_tui import cli, launch

    started = []

    class FakePopen:
        def __init__(self, argv, **kwargs):
            started.append((argv, kwargs))
            self.pid = 0

        def wait(self):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", FakePopen)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = str(tmp_path / "runs")
    result = runner.invoke(cli.app, ["train", "--gpus", "2", "--device", "cpu", "--model", "resnet18",
                                     "--no_pretrained", "--lr", "0.01", "--output_dir", out])
    assert result.exit_code == 0, result.output
    (argv, kwargs), = started
    assert isinstance(argv, list) and kwargs.get("start_new_session") is True
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in argv and "--standalone" in argv
    tail = argv[argv.index("medcls_tui"):]
    assert tail[:2] == ["medcls_tui", "train"] and "--gpus" not in tail
    assert {("--device", "cpu"), ("--model", "resnet18"), ("--lr", "0.01"), ("--output_dir", out)} <= set(zip(tail, tail[1:]))
    assert "--no_pretrained" in tail
    assert not (tmp_path / "runs").exists()  # the parent itself trains nothing


def test_gpus_without_enough_gpus_is_one_line_exit_2(monkeypatch):
    import torch

    from medcls_tui.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = runner.invoke(app, ["train", "--gpus", "2", "--no_pretrained"])
    assert result.exit_code == 2
    assert "--gpus 2: 0 CUDA GPU(s) visible on this machine; use --gpus 1, or --device cpu" in result.output


def test_a_ctrl_c_forwarded_by_torchrun_is_one_stop_not_an_abort():
    """Under torchrun a Ctrl-C reaches each rank twice (terminal + launcher): within the echo window the
    second is the same request; a real second Ctrl-C later still aborts."""
    from core.events import Control
    from medcls_tui.cli import _StopSignals

    aborts = []
    control = Control()
    handler = _StopSignals(control, lambda: aborts.append(1), echo_window_s=60.0, echo_any_kind=True)
    handler._handle(signal.SIGINT, None)
    handler._handle(signal.SIGTERM, None)
    assert control.stop_requested and handler.received == ["SIGINT"] and not aborts
    plain = _StopSignals(Control(), lambda: aborts.append(1), echo_window_s=0.0)
    plain._handle(signal.SIGINT, None)
    plain._handle(signal.SIGINT, None)
    assert aborts == [1]


def test_a_group_signal_forwarded_by_uv_run_is_one_stop_but_two_kinds_abort():
    """`uv run medcls train` and a signal to the group (Ctrl-C, a closed SSH session, `timeout`): the
    process gets it directly and again from uv, so the same signal at once is one stop request; two
    different signals are two requests, and the second aborts."""
    from core.events import Control
    from medcls_tui.cli import _StopSignals

    aborts = []
    control = Control()
    handler = _StopSignals(control, lambda: aborts.append(1), echo_window_s=60.0)
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGHUP):
        handler._handle(sig, None)
        if sig == signal.SIGTERM:
            assert control.stop_requested and handler.received == ["SIGTERM"] and not aborts
    assert handler.received == ["SIGTERM", "SIGHUP"] and aborts == [1]


def test_sync_bn_converts_batchnorm_on_gpus_and_says_why_not_elsewhere(tiny_flags):
    import torch
    from torch import nn

    from core.training.distributed import DistContext
    from core.training.components import convert_sync_bn

    warnings: list[str] = []
    two_ranks = DistContext(rank=0, world_size=2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))  # conversion only: nothing runs on the device
    model = convert_sync_bn(model, True, two_ranks, torch.device("cuda", 0), warnings)
    assert isinstance(model[1], nn.SyncBatchNorm)
    model = convert_sync_bn(nn.Sequential(nn.BatchNorm2d(4)), True, two_ranks, torch.device("cpu"), warnings)
    assert type(model[0]) is nn.BatchNorm2d
    assert any("SyncBatchNorm needs CUDA" in w for w in warnings)


def test_resume_with_another_process_count_is_refused_with_the_count(tiny_flags, one_torch_thread):
    """The epoch's batches and the position depend on the number of ranks: a run trained by 2 processes
    resumes only with 2, and the message says how."""
    import torch

    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config
    from core.runs.resume import ResumeError

    summary = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 1}, vram_gib=None)).fit()
    run = Path(tiny_flags["output_dir"]) / summary["run_name"]
    assert summary["world_size"] == 1
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    assert state["world_size"] == 1
    state["world_size"] = 2
    torch.save(state, last)
    with pytest.raises(ResumeError, match=r"trained by 2 process\(es\), resumed by 1.*--gpus 2"):
        Trainer(resolve_config({**tiny_flags, "epochs": 2}, vram_gib=None), resume_dir=run).fit()


# ---------------------------------------------------------------- real `medcls train --gpus 2 --device cpu` jobs
PER_RANK_BATCH = 8
ACCUM = 2
JOB_FLAGS = ["--device", "cpu", "--model", "test_vit", "--img_size", "32", "--synthetic_size", "160", "--epochs", "2",
             "--num_workers", "0", "--no_pretrained", "--drop_path_rate", "0", "--lr", "0.001", "--log_every", "1",
             "--checkpoint_every", "1", "--grad_accum_steps", str(ACCUM)]
"""A LayerNorm model without stochastic depth: with the same global batch, 2 ranks compute the same
gradients as one process (BatchNorm would see half the batch per rank; SyncBatchNorm is CUDA-only).
Two micro-batches per step: DDP syncs only the last one's backward (no_sync), the sum must not change."""
JOB_TIMEOUT_S = 900


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun runs in its own session, so a process group kill misses it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Job:
    """A `medcls train --gpus 2` process tree; `kill()` ends all of it."""

    def __init__(self, out: Path, *extra: str) -> None:
        self.out = out
        self.log = out.parent / f"{out.name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "medcls_tui", "train", "--gpus", "2", *JOB_FLAGS,
                                          "--batch_size", str(PER_RANK_BATCH), "--output_dir", str(out), *extra],
                                         cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> int:
        return self.proc.wait(JOB_TIMEOUT_S)

    def wait_for_step(self, run: Path, step: int) -> None:
        """Poll (0.2 s steps, bounded by JOB_TIMEOUT_S) until the run logged `step`; fails if the job ends first."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not ((run / "metrics.jsonl").is_file() and any(r["global_step"] >= step for r in records(run, "Step"))):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no step {step}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass


def records(run: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("event") == event]


def step_losses(run: Path) -> dict[int, float]:
    return {r["global_step"]: r["loss"] for r in records(run, "Step")}


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory):
    """One 2-rank job, started once for the tests below (the app test follows it while it runs)."""
    job = Job(tmp_path_factory.mktemp("ddp") / "runs", "--run_name", "ddp")
    yield job
    job.kill()


@pytest.mark.processes
async def test_the_app_follows_a_distributed_run_from_its_folder(tmp_path):
    """The app is not rank 0's process: the runs screen shows the job running (rank 0 holds run.lock),
    and the run's detail screen follows metrics.jsonl to the job's end. The job is long (50 epochs) and
    the test ends it with a Ctrl-C once the detail screen shows it running, so how fast this machine
    trains never decides what the app sees."""
    from medcls_tui.screens.run_detail import RunDetailScreen
    from medcls_tui.screens.runs import RunsScreen
    from test_tui_helpers import make_app, picker_ready, screen_text, wait_for, wait_for_text

    job = Job(tmp_path / "runs", "--run_name", "ddp", "--epochs", "50")
    run = job.out / "ddp"
    try:
        app = make_app(job.out)
        async with app.run_test(size=(80, 24)) as pilot:
            await picker_ready(pilot)
            await wait_for(pilot, lambda: (run / "metrics.jsonl").is_file() and bool(records(run, "RunStarted")),
                           timeout=JOB_TIMEOUT_S, what="rank 0 starting the run")
            assert job.proc.poll() is None, job.output()
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
            listed = await wait_for_text(pilot, "ddp", "running")
            assert "ddp" in listed
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
            await wait_for_text(pilot, "ddp", "running")
            job.proc.send_signal(signal.SIGINT)  # both ranks stop after one step; rank 0 writes the summary
            await wait_for(pilot, lambda: "stopped" in screen_text(pilot.app), timeout=JOB_TIMEOUT_S,
                           what="the detail screen following the run to its end")
            assert records(run, "RunFinished")  # it followed the folder to the end, not a cached state
        assert job.wait() == 0, job.output()[-3000:]
    finally:
        job.kill()


@pytest.mark.processes
def test_two_ranks_train_as_one_process_with_the_global_batch_and_rank_0_writes_once(ddp_job, tmp_path,
                                                                                      one_torch_thread):
    assert ddp_job.wait() == 0, ddp_job.output()
    assert [p.name for p in ddp_job.out.iterdir()] == ["ddp"]  # one run folder for the job
    run = ddp_job.out / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
    assert summary["batch_size"] == PER_RANK_BATCH and summary["effective_batch"] == 2 * PER_RANK_BATCH * ACCUM
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(records(run, "RunStarted")) == 1 and len(records(run, "RunFinished")) == 1
    steps = records(run, "Step")
    assert len(steps) == len({s["global_step"] for s in steps})  # one writer: each step logged once

    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

    flags = {"device": "cpu", "model": "test_vit", "img_size": 32, "synthetic_size": 160, "epochs": 2,
             "grad_accum_steps": ACCUM,
             "num_workers": 0, "pretrained": False, "drop_path_rate": 0.0, "lr": 0.001, "log_every": 1,
             "batch_size": 2 * PER_RANK_BATCH, "output_dir": str(tmp_path / "one")}
    single = Trainer(resolve_config(flags, vram_gib=None)).fit()
    one = tmp_path / "one" / single["run_name"]
    expected, got = step_losses(one), step_losses(run)
    assert sorted(got) == sorted(expected) and len(got) >= 6
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-5), step
    for mine, theirs in zip(records(run, "EpochDone"), records(one, "EpochDone")):
        assert mine["metrics"]["val_auroc"] == pytest.approx(theirs["metrics"]["val_auroc"], abs=1e-4)
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)


@pytest.mark.processes
def test_a_killed_rank_ends_the_job_and_retrain_resumes_at_the_same_step(ddp_job, tmp_path):
    """Rank 0 killed mid-epoch: the job ends (torchrun stops the other rank; no hang), rank 0's lock is
    gone, and `--retrain --gpus 2` restarts at the last checkpoint's step and then takes the steps the
    uninterrupted job took (same losses)."""
    from core.runs.lock import is_locked, read_holder

    assert ddp_job.wait() == 0, ddp_job.output()
    reference = step_losses(ddp_job.out / "ddp")
    out = tmp_path / "runs"
    run = out / "killed"
    job = Job(out, "--run_name", "killed")
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not ((run / "metrics.jsonl").is_file()
                   and any(r["global_step"] >= 3 for r in records(run, "CheckpointSaved"))):
            assert job.proc.poll() is None, job.output()
            assert time.monotonic() < deadline, "no checkpoint at step 3"
            time.sleep(0.2)
        os.kill(read_holder(run)["pid"], signal.SIGKILL)  # rank 0 (the lock holder) dies
        assert job.wait() != 0
        assert not is_locked(run)
    finally:
        job.kill()
    import torch

    position = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["position"]
    kept = position["global_step"]
    assert kept >= 3 and kept < max(reference)
    # each rank took its half of every global batch (not the whole of it): the samples seen in the
    # epoch so far, summed over ranks, are one global batch per micro-step
    assert position["epoch_seen"] == position["step_in_epoch"] * 2 * PER_RANK_BATCH * ACCUM
    assert not (run / "summary.json").exists()  # rank 0 died: nothing claims the run ended

    resumed = Job(out, "--retrain", "killed")
    try:
        assert resumed.wait() == 0, resumed.output()
    finally:
        resumed.kill()
    (restart,) = records(run, "Resumed")
    assert restart["global_step"] == kept
    after = {r["global_step"]: r["loss"] for r in records(run, "Step")[-(max(reference) - kept):]}
    assert sorted(after) == list(range(kept + 1, max(reference) + 1))
    for step, loss in after.items():
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.processes
def test_ctrl_c_on_gpus_stops_every_rank_at_the_same_step_with_a_checkpoint(tmp_path):
    """A Ctrl-C reaches `medcls train --gpus 2` (torchrun runs in its own session): it is passed on once,
    both ranks agree to stop after the same step, rank 0 saves last.pt there and says `stopped`; no
    rank fails on a collective the other left."""
    import torch

    out = tmp_path / "runs"
    run = out / "stopped"
    job = Job(out, "--run_name", "stopped", "--epochs", "20")
    try:
        job.wait_for_step(run, 2)
        job.proc.send_signal(signal.SIGINT)
        rc = job.wait()
    finally:
        job.kill()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped", job.output()
    assert rc == 0 and "Traceback" not in job.output(), job.output()[-3000:]  # torchrun ends cleanly too
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["position"]["global_step"] == summary["global_step"] == records(run, "Step")[-1]["global_step"]
    assert summary["epochs_completed"] < 20
    assert "rank 1:" not in job.output()  # rank 1 stopped with rank 0, it did not fail on a missing peer
