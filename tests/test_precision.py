"""amp_dtype auto: bf16 only where the GPU has it natively (issue 12.4), checked with a mocked GPU."""
from __future__ import annotations

import pytest
import torch

from core.training import precision
from core.training.precision import autocast_dtype

CUDA = torch.device("cuda")


@pytest.fixture
def gpu(monkeypatch):
    """A pretend CUDA card; torch's own check counts emulated bf16 as supported, as on a T4/V100."""
    def card(capability):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.version, "hip", None)
    return card


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_picks_bf16_only_with_native_support(gpu, capability, expected):
    gpu(capability)
    assert autocast_dtype(True, "auto", CUDA) is expected


def test_explicit_choice_cpu_and_off(gpu):
    gpu((7, 5))
    assert autocast_dtype(True, "bf16", CUDA) is torch.bfloat16
    assert autocast_dtype(True, "fp16", CUDA) is torch.float16
    assert autocast_dtype(False, "auto", CUDA) is None
    assert autocast_dtype(True, "auto", torch.device("cpu")) is None


def test_engine_and_probe_use_the_same_rule():
    import inspect

    from core.training import components as engine
    from core.hardware import probe_bench

    for module in (engine, probe_bench):
        src = inspect.getsource(module)
        assert "autocast_dtype(" in src and "is_bf16_supported" not in src, module.__name__
    assert precision.native_bf16(torch.device("cpu")) is False
