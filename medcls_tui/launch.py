"""`medcls train --gpus N`: the same run started through PyTorch's own launcher, torch.distributed.run
(torchrun), with N processes on this machine. Nothing here trains: every rank runs `python -m
medcls_tui train` with the same flags, and the engine (core/training/distributed.py) does the rest.

The launcher runs in its own session, so a Ctrl-C reaches it once, through this process: the first
signal is passed on as SIGTERM to every rank (torchrun's children), which stop together after the
current step with a checkpoint and exit 0, so torchrun ends cleanly too (signalling torchrun itself
would make it print a traceback and fail the job); a second one is sent to the whole group (every
rank aborts). Under `uv run` a Ctrl-C reaches this process twice (from the terminal, then passed on by
uv): the same signal again within UV_ECHO_WINDOW_S is that echo, not a second request.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional

UV_ECHO_WINDOW_S = 1.0
"""The same signal this soon after the first is the echo `uv run` passes on (the one-process CLI uses it too)."""
SHUTDOWN_TIMEOUT_S = 600
"""How long torchrun lets the ranks finish a requested stop (checkpoint + summary) before SIGKILL."""


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def train_argv(flags: dict[str, Any], extras: dict[str, Any]) -> list[str]:
    """The `medcls train` arguments that give the same resolved config (flags as given, not resolved,
    so tips and presets are applied by each rank exactly as here)."""
    argv: list[str] = []
    for key in ("preset", "config_file", "retrain"):
        if extras.get(key):
            argv += ["--config" if key == "config_file" else f"--{key}", str(extras[key])]
    for key, value in flags.items():
        if isinstance(value, bool):
            argv.append(f"--{key}" if value else f"--no_{key}")
        elif value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def torchrun_argv(nproc: int, train_args: list[str]) -> list[str]:
    """torch.distributed.run on this machine: a standalone rendezvous on a free local port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--shutdown_timeout={SHUTDOWN_TIMEOUT_S}", "-m", "medcls_tui", "train", *train_args]


def check_gpus(nproc: int, device: Optional[str]) -> Optional[str]:
    """Why N processes cannot run here, or None. CPU processes (--device cpu) use gloo and need no GPU."""
    if nproc < 1:
        return f"--gpus: must be >= 1 (got {nproc})"
    if (device or "auto") == "cpu":
        return None
    if (device or "auto").startswith("cuda:"):
        return f"--gpus {nproc}: each rank picks its own GPU (cuda:LOCAL_RANK); use --device cuda or auto, not {device}"
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < nproc:
        return (f"--gpus {nproc}: {found} CUDA GPU(s) visible on this machine; use --gpus {found or 1}"
                + (", or --device cpu for CPU processes (gloo)" if found == 0 else ""))
    return None


def rank_pids(launcher_pid: int) -> list[int]:
    """The launcher's child processes (torchrun's ranks), read from /proc; empty where it cannot tell."""
    pids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{launcher_pid}/task"):
            with open(f"/proc/{launcher_pid}/task/{task}/children", encoding="ascii") as fh:
                pids += [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return []
    return pids


class Forwarder:
    """The launcher's handler for SIGINT/SIGTERM/SIGHUP: the first is passed on as SIGTERM to every rank
    (a graceful stop at the same step); the same signal again within UV_ECHO_WINDOW_S is the echo `uv
    run` passes on, ignored; any later or other signal goes to torchrun's whole group (every rank aborts)."""

    def __init__(self, child_pid: int, echo_window_s: float = UV_ECHO_WINDOW_S) -> None:
        self.child_pid = child_pid
        self.echo_window_s = echo_window_s
        self.received: list[int] = []
        self._first_at = 0.0

    def __call__(self, signum: int, frame: Any = None) -> None:  # noqa: ARG002 - signal handler signature
        now = time.monotonic()
        if len(self.received) == 1 and signum == self.received[0] and now - self._first_at < self.echo_window_s:
            return  # uv's echo of the same Ctrl-C: one stop request, not an abort
        self.received.append(signum)
        self._first_at = self._first_at or now
        try:
            if len(self.received) == 1:
                for pid in rank_pids(self.child_pid) or [self.child_pid]:  # no ranks yet: torchrun passes it on
                    os.kill(pid, signal.SIGTERM)  # graceful stop of every rank at the same step
            else:
                os.killpg(self.child_pid, signal.SIGINT)  # a second signal for every rank: abort
        except ProcessLookupError:
            pass
        if len(self.received) == 1:
            self._say(f"medcls: {signal.Signals(signum).name}: every rank stops after this step and saves a "
                      f"checkpoint (the same signal again after {self.echo_window_s:g} s, or another one, aborts)")

    @staticmethod
    def _say(text: str) -> None:
        try:
            print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # the terminal is gone (SIGHUP): the stop goes on without the line
            pass


def run_torchrun(nproc: int, train_args: list[str], env: Optional[dict[str, str]] = None) -> int:
    """Start torchrun with N ranks and wait; returns its exit code. Signals are passed on (see module doc)."""
    child = subprocess.Popen(torchrun_argv(nproc, train_args), start_new_session=True, env=env)
    forward = Forwarder(child.pid)
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, forward)
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
