"""Warmup + cosine shape and early-stopping semantics (pure functions, no training)."""
from __future__ import annotations

import math

import pytest

from core.early_stopping import EarlyStopping
from core.schedule import lr_factor


def test_warmup_is_linear_then_cosine_to_floor():
    total, warm, floor = 100, 10, 0.01
    f = [lr_factor(s, total, warm, floor) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(f[:9], f[1:10])), "warmup must ramp up"
    assert all(b <= a for a, b in zip(f[10:], f[11:])), "cosine must not increase"
    mid = 10 + 45
    assert f[mid] == pytest.approx(floor + (1 - floor) * 0.5, abs=0.02)
    assert f[-1] == pytest.approx(floor, abs=0.01)


def test_no_warmup_starts_at_peak():
    assert lr_factor(0, 50, 0, 0.0) == pytest.approx(1.0)


def test_early_stopping_patience_and_min_delta():
    es = EarlyStopping(monitor="val_auroc", mode="max", patience=2, min_delta=0.01)
    assert es.update(1, {"val_auroc": 0.70}) is True
    assert es.update(2, {"val_auroc": 0.705}) is False and es.wait == 1  # below min_delta
    assert es.update(3, {"val_auroc": 0.72}) is True and es.wait == 0
    es.update(4, {"val_auroc": 0.71})
    assert not es.stopped
    es.update(5, {"val_auroc": 0.72})
    assert es.stopped and es.best_epoch == 3 and "no improvement" in es.reason


def test_early_stopping_min_mode_and_nonfinite_stops():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=5)
    assert es.update(1, {"val_loss": 1.0})
    assert es.update(2, {"val_loss": 0.5})
    es.update(3, {"val_loss": math.nan})
    assert es.stopped and "non-finite" in es.reason and es.best_value == 0.5


def test_patience_zero_never_stops_but_tracks_best():
    es = EarlyStopping(monitor="val_auroc", mode="max", patience=0)
    for epoch, v in enumerate([0.5, 0.4, 0.3, 0.2, 0.1], start=1):
        es.update(epoch, {"val_auroc": v})
    assert not es.stopped and es.best_epoch == 1


def test_divergence_threshold():
    es = EarlyStopping(monitor="val_auroc", mode="max", patience=0, divergence_threshold=5.0)
    es.update(1, {"val_auroc": 0.6, "val_loss": 7.0})
    assert es.stopped and "divergence" in es.reason


def test_state_roundtrip():
    es = EarlyStopping(monitor="val_auroc", patience=3)
    es.update(1, {"val_auroc": 0.8})
    es.update(2, {"val_auroc": 0.7})
    clone = EarlyStopping(monitor="x")
    clone.load_state_dict(es.state_dict())
    assert clone == es
