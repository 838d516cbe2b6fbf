"""Warmup + cosine shape and early-stopping semantics (pure functions, no training)."""
from __future__ import annotations

import math

import pytest

from core.training.early_stopping import EarlyStopping
from core.training.schedule import lr_factor


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
    # better, so the new best checkpoint, but not by min_delta: patience counts on
    assert es.update(2, {"val_auroc": 0.705}) is True and es.wait == 1 and es.best_epoch == 2
    assert es.update(3, {"val_auroc": 0.72}) is True and es.wait == 0
    es.update(4, {"val_auroc": 0.71})
    assert not es.stopped
    es.update(5, {"val_auroc": 0.72})
    assert es.stopped and es.best_epoch == 3 and "no improvement" in es.reason


def test_best_follows_the_monitor_alone_not_min_delta():
    """Issue 12.2: with min_delta 0.01 and 0.800, 0.805, 0.809 the best is 0.809 (as Lightning's
    ModelCheckpoint), while patience still only resets on a 0.01 improvement."""
    es = EarlyStopping(monitor="val_auroc", mode="max", patience=2, min_delta=0.01)
    flags = [es.update(e, {"val_auroc": v}) for e, v in enumerate([0.800, 0.805, 0.809], start=1)]
    assert flags == [True, True, True]
    assert es.best_value == 0.809 and es.best_epoch == 3
    assert es.stopped and es.wait == 2
    low = EarlyStopping(monitor="val_loss", mode="min", min_delta=0.5)
    assert [low.update(e, {"val_loss": v}) for e, v in enumerate([1.0, 0.9, 0.95], start=1)] == [True, True, False]
    assert low.best_epoch == 2


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


def test_divergence_threshold_reads_the_monitor():
    """Issue 12.3: a high val_loss does not stop an AUROC-monitored run; the AUROC below the threshold
    does, and that epoch is never the best."""
    es = EarlyStopping(monitor="val_auroc", mode="max", patience=0, divergence_threshold=0.55)
    assert es.update(1, {"val_auroc": 0.9, "val_loss": 7.0}) is True and not es.stopped
    assert es.update(2, {"val_auroc": 0.5, "val_loss": 0.1}) is False
    assert es.stopped and "divergence" in es.reason and "val_auroc" in es.reason and es.best_epoch == 1
    first = EarlyStopping(monitor="val_loss", mode="min", divergence_threshold=5.0)
    assert first.update(1, {"val_loss": 7.0}) is False
    assert first.stopped and first.best_epoch is None and "above" in first.reason


def test_state_roundtrip():
    es = EarlyStopping(monitor="val_auroc", patience=3)
    es.update(1, {"val_auroc": 0.8})
    es.update(2, {"val_auroc": 0.7})
    clone = EarlyStopping(monitor="x")
    clone.load_state_dict(es.state_dict())
    assert clone == es
