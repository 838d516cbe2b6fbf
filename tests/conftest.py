"""Shared test helpers: the real-fixture location, a tiny fast training config, and the guard that
releases every engine run a test starts."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "dataset": "synthetic",
    "model": "resnet18",
    "img_size": 32,
    "synthetic_size": 96,
    "epochs": 2,
    "batch_size": 16,
    "num_workers": 0,
}

THREAD_RELEASE_S = 180.0
"""How long teardown waits for a stopped run's thread to end (a stop saves a checkpoint; CI may be busy)."""


# ---------------------------------------------------------------- the real chest X-ray fixtures
def fixtures_root() -> Path | None:
    """The real fixtures: `$MEDCLS_FIXTURES`, else `../shared/fixtures` beside the repo; None if absent.

    The only place tests/ names that folder: a clone without it still passes (real_data tests skip).
    """
    env = os.environ.get("MEDCLS_FIXTURES")
    root = Path(env).expanduser() if env else REPO.parent / "shared" / "fixtures"
    return root if root.is_dir() else None


def real_fixture(*parts: str) -> Path:
    """A path inside the real fixtures, or a skip with a one-line reason when they are absent."""
    root = fixtures_root()
    if root is None:
        where = os.environ.get("MEDCLS_FIXTURES") or str(REPO.parent / "shared" / "fixtures")
        pytest.skip(f"real fixtures not found at {where} (set MEDCLS_FIXTURES=DIR)")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real fixture {path} missing")
    return path


def spec_file() -> Path:
    """The spec the tips were written from (beside the fixtures); skips when absent."""
    return real_fixture("..", "spec", "TRAINING_TIPS.md")


# ---------------------------------------------------------------- tiny runs
@pytest.fixture
def tiny_flags(tmp_path):
    """Flags for a run that trains in a few seconds on 2 CPU cores."""
    return {**TINY, "output_dir": str(tmp_path / "runs")}


@pytest.fixture(autouse=True)
def _isolated_user_presets(tmp_path, monkeypatch):
    """Never read or write the developer's real ~/.config/medcls/presets in tests."""
    monkeypatch.setenv("MEDCLS_PRESET_DIR", str(tmp_path / "user_presets"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread is as fast and immune to oversubscribed shared CI cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- no run outlives its test
_PROJECT_DIRS = tuple(str(REPO / d) + os.sep for d in ("core", "medcls_tui", "tests", "bench"))


def project_threads() -> list[threading.Thread]:
    """Threads other than this one that are executing project or test code (an engine run, a stub
    trainer, a test's own thread). An idle executor thread runs only library code and is not counted."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        if thread is threading.current_thread():
            continue
        frame = frames.get(thread.ident)
        while frame is not None:
            if frame.f_code.co_filename.startswith(_PROJECT_DIRS):
                found.append(thread)
                break
            frame = frame.f_back
    return found


@pytest.fixture(autouse=True)
def _release_runs(monkeypatch):
    """Every engine Control made during a test is told to stop (which also wakes a paused loop) when
    the test ends, pass or fail; then every thread still running project code is joined. One that
    outlives THREAD_RELEASE_S fails the test here instead of poisoning later tests or keeping
    pytest from exiting."""
    from core import events

    controls: list = []
    original_init = events.Control.__init__

    def tracked_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        controls.append(self)

    monkeypatch.setattr(events.Control, "__init__", tracked_init)
    yield controls
    for control in controls:
        control.request_stop()
    left = join_project_threads(THREAD_RELEASE_S)
    if left:
        pytest.fail(f"{len(left)} thread(s) still running project code after the test: "
                    + ", ".join(t.name for t in left), pytrace=False)


def join_project_threads(timeout_s: float) -> list[threading.Thread]:
    """Join the threads running project code; the ones still alive after `timeout_s` in all."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        busy = project_threads()
        if not busy:
            return []
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return busy
        busy[0].join(min(remaining, 1.0))
