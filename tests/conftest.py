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
    "pretrained": False,  # random init: tests never reach a model hub (test_pretrained.py builds a fake cache)
}

THREAD_RELEASE_S = 180.0
"""How long teardown waits for a stopped run's thread to end (a stop saves a checkpoint; CI may be busy)."""


# ---------------------------------------------------------------- the real chest X-ray fixtures
def fixtures_dir() -> Path:
    """Where the real fixtures are looked for: `$MEDCLS_FIXTURES`, else `../shared/fixtures` beside
    the repo. The only place tests/ names that folder; tests that read it are marked `real_data`
    and skip (one line, see below) where it is absent: a user's clone, a fork's CI, a pip install."""
    env = os.environ.get("MEDCLS_FIXTURES")
    return Path(env).expanduser().resolve() if env else REPO.parent / "shared" / "fixtures"


FIXTURES = fixtures_dir()
"""Use only inside tests marked `@pytest.mark.real_data`."""
SPEC = FIXTURES.parent / "spec" / "TRAINING_TIPS.md"
"""The spec the tips were written from, kept beside the fixtures (a real_data check only)."""


def pytest_collection_modifyitems(config, items):
    """Skip `real_data` tests with one line when the fixtures are absent (before their fixtures run)."""
    if FIXTURES.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real fixtures not found at {FIXTURES} (set MEDCLS_FIXTURES=DIR)")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------- tiny runs
@pytest.fixture
def tiny_flags(tmp_path):
    """Flags for a run that trains in a few seconds on 2 CPU cores."""
    return {**TINY, "output_dir": str(tmp_path / "runs")}


@pytest.fixture(autouse=True)
def _isolated_user_presets(tmp_path, monkeypatch):
    """Never read or write the developer's real ~/.config/medcls/presets in tests."""
    monkeypatch.setenv("MEDCLS_PRESET_DIR", str(tmp_path / "user_presets"))


@pytest.fixture(autouse=True)
def _no_model_hub(tmp_path, monkeypatch):
    """No test reaches the Hugging Face hub: an empty, offline hub cache for this test and its subprocesses.

    A run that asks for pretrained weights without a cache set up by the test fails at once with the
    clear "weights not in the cache" message instead of waiting on the network.
    """
    from huggingface_hub import constants

    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


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
