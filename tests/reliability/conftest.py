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
                "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    return env


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
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
