"""One writer per run folder: `run.lock` holds the writer's pid and host under an flock.

The kernel drops an flock when its process dies (SIGKILL, power loss on a local disk), so a lock
file left behind by a killed run is recognised as stale and taken over without guessing from
pids. The pid and host inside only serve to name the holder in the error a second writer gets,
and to tell a run that is training now ("running") from one whose process is gone ("interrupted").
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Optional

LOCK_FILE = "run.lock"


class RunLockedError(ValueError):
    """Another live process writes this run; the message names it."""


def _holder_text(info: dict) -> str:
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}"


def read_holder(run_dir: Path) -> Optional[dict]:
    """The pid/host written in the lock file (None when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_locked(run_dir: Path) -> bool:
    """True while some live process holds the run's lock (this one included)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False


def check_not_locked(run_dir: Path) -> None:
    """RunLockedError naming the holder when a live process writes the run (a cheap early check;
    RunLock.acquire is the one that counts)."""
    if is_locked(run_dir):
        holder = read_holder(run_dir) or {}
        raise RunLockedError(f"run {Path(run_dir).name} is being written by another process "
                             f"({_holder_text(holder)}); wait for it to finish or stop it")


class RunLock:
    """`with RunLock(run_dir):` or acquire()/release(); release removes the lock file."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        for _ in range(10):  # retried only when a releasing writer removed the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = read_holder(self.path.parent) or {}
                raise RunLockedError(
                    f"run {self.path.parent.name} is being written by another process ({_holder_text(holder)}); "
                    f"wait for it to finish or stop it (lock: {self.path})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if not same:  # the file we locked was unlinked by a writer that just finished
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self._fd = fd
            return self
        raise RunLockedError(f"run {self.path.parent.name}: could not take the lock {self.path}")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # unlink before unlocking: a waiter then sees a fresh inode
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
