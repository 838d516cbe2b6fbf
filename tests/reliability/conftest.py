"""Helpers for the reliability tests: real processes, real signals, a small full disk."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs (a disk that really fills up); skipped with the reason when it cannot be mounted."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def medcls_cmd(*args: str) -> list[str]:
    """`medcls ARGS` in a fresh interpreter (the real CLI entry point)."""
    return [sys.executable, "-c", "from medcls_tui.cli import main; main()", *args]


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MEDCLS_PRESET_DIR": str(tmp_path / "user_presets"), "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1"})  # never the network, even from module-scoped fixtures
    return env


def run_cli(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(medcls_cmd(*args), cwd=tmp_path, env=child_env(tmp_path), capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess, code: int = 2, *needles: str) -> str:
    """Exit code `code`, stderr one `error:` line (no traceback), containing every needle."""
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], err[-2000:])
    assert "Traceback" not in err and "Traceback" not in done.stdout, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


TINY_ARGS = ("--dataset", "synthetic", "--model", "resnet18", "--img_size", "32", "--synthetic_size", "96",
             "--batch_size", "8", "--log_every", "1", "--device", "cpu", "--no_pretrained")


class TrainProcess:
    """`medcls train` in its own session (so a signal can go to its whole process group)."""

    def __init__(self, tmp_path: Path, *args: str):
        self.tmp_path = tmp_path
        self.log = open(tmp_path / f"train-{len(list(tmp_path.glob('train-*.log')))}.log", "w+")
        self.proc = subprocess.Popen(medcls_cmd("train", *args), cwd=tmp_path, env=child_env(tmp_path),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = 600.0):
        """Poll a condition on the run's files/output (not a sleep standing in for an event)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None and not condition():
                raise AssertionError(f"process ended (rc {self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")

    def finish(self, timeout: float = 600.0) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def train_process(tmp_path):
    """Factory of TrainProcess; every process (and its group) is killed at teardown."""
    started: list[TrainProcess] = []

    def start(*args: str) -> TrainProcess:
        proc = TrainProcess(tmp_path, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def step_records(run_dir: Path) -> list[dict]:
    from core.runs.folder import read_metrics

    return [r for r in read_metrics(run_dir, include_superseded=True) if r.get("event") == "Step"]


def run_dir_of(output_dir: Path) -> Path | None:
    dirs = [p for p in output_dir.iterdir() if p.is_dir()] if output_dir.is_dir() else []
    return dirs[0] if len(dirs) == 1 else None
