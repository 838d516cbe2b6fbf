"""`uv run medcls train --gpus N` and one Ctrl-C (issue 24): the launcher gets the signal twice, from the
terminal and again from uv. The echo must stay one stop request; torchrun must never see it."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from test_distributed import JOB_TIMEOUT_S, Job, records


def test_the_gpus_launcher_takes_uvs_echo_of_a_signal_as_the_same_request(monkeypatch):
    """`uv run medcls train --gpus 2` and one Ctrl-C: the launcher gets SIGINT from the terminal and at once
    again from uv. The echo must not reach torchrun (it would print SignalException and exit 1): one
    SIGTERM per rank, nothing more; a second Ctrl-C later, or another signal, still aborts every rank."""
    import types

    from medcls_tui import launch

    sent = []
    fake_os = types.SimpleNamespace(kill=lambda pid, sig: sent.append(("kill", pid, sig)),
                                    killpg=lambda pid, sig: sent.append(("killpg", pid, sig)))
    monkeypatch.setattr(launch, "os", fake_os)
    monkeypatch.setattr(launch, "rank_pids", lambda pid: [11, 12])
    forward = launch.Forwarder(10, echo_window_s=60.0)
    forward(signal.SIGINT)
    forward(signal.SIGINT)  # uv's echo
    assert sent == [("kill", 11, signal.SIGTERM), ("kill", 12, signal.SIGTERM)]
    forward(signal.SIGTERM)  # another kind: a second request
    assert sent[-1] == ("killpg", 10, signal.SIGINT)
    sent.clear()
    late = launch.Forwarder(10, echo_window_s=0.0)  # the same signal after the window: an abort
    late(signal.SIGINT)
    late(signal.SIGINT)
    assert sent[-1] == ("killpg", 10, signal.SIGINT)


@pytest.mark.processes
def test_a_ctrl_c_echoed_by_uv_run_stops_the_gpus_job_cleanly(tmp_path):
    """`uv run medcls train --gpus 2` and one Ctrl-C to the group: the launcher gets SIGINT twice in quick
    succession (the terminal, then uv passing it on). Every rank stops at the same step, the job exits 0,
    and torchrun prints no SignalException traceback, as without uv."""
    import torch

    out = tmp_path / "runs"
    run = out / "echo"
    job = Job(out, "--run_name", "echo", "--epochs", "20")
    try:
        job.wait_for_step(run, 2)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        os.killpg(job.proc.pid, signal.SIGINT)  # the terminal's Ctrl-C to the group (the launcher leads it)
        # uv passes the same signal on a moment later, once the first was handled (two signals sent back to
        # back would reach the launcher's Python handler once): the launcher's line, or the ranks' own
        while not ("medcls: SIGINT: every rank stops" in job.output() or "SIGTERM: stopping" in job.output()):
            assert job.proc.poll() is None and time.monotonic() < deadline, job.output()[-3000:]
            time.sleep(0.01)
        os.killpg(job.proc.pid, signal.SIGINT)
        rc = job.wait()
    finally:
        job.kill()
    output = job.output()
    assert rc == 0 and "Traceback" not in output and "SignalException" not in output, output[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped", output[-3000:]
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["position"]["global_step"] == summary["global_step"]
