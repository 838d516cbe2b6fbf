"""Shared test helpers: fixture location and a tiny, fast training config."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
SPEC = SHARED / "spec" / "TRAINING_TIPS.md"

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
