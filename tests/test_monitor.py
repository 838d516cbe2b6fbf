"""The spec's monitoring signs: overfitting and underfitting warnings, and none on a healthy run."""
from core.monitor import TrainingMonitor


def feed(rows):
    mon = TrainingMonitor()
    out = []
    for epoch, (tl, vl, ta, va) in enumerate(rows, start=1):
        out += mon.update(epoch, tl, vl, ta, va)
    return [kind for kind, _ in out]


def test_overfitting_when_val_loss_rises_as_train_loss_falls():
    assert "overfitting" in feed([(1.0, 1.0, None, None), (0.8, 0.9, None, None), (0.6, 1.0, None, None),
                                  (0.4, 1.1, None, None)])


def test_overfitting_from_growing_accuracy_gap_with_stalled_val_loss():
    rows = [(1.0, 1.0, 0.5, 0.5), (0.8, 0.9, 0.7, 0.55), (0.6, 0.95, 0.85, 0.55), (0.5, 0.92, 0.95, 0.55)]
    assert "overfitting" in feed(rows)


def test_underfitting_when_both_losses_plateau_high():
    assert "underfitting" in feed([(1.0, 1.0, None, None)] + [(0.999, 1.001, None, None)] * 4)


def test_healthy_run_gives_no_warning():
    rows = [(1.0 - 0.1 * i, 1.05 - 0.09 * i, 0.5 + 0.04 * i, 0.45 + 0.04 * i) for i in range(8)]
    assert feed(rows) == []
