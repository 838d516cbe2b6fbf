"""Issue 25.4: validation and test scoring give the same AUROC on the same predictions (one
implementation, core/evaluation/metrics.py) and run the model at the same precision."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config.resolve import resolve_config
from core.evaluation.metrics import evaluate_probabilities
from core.training.trainer import Trainer
from core.training.val_metrics import classification_metrics


def case(kind: str, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "multi_label":
        targets = (rng.random((n, 4)) < 0.3).astype(np.float32)
        logits = targets * 1.2 + rng.normal(size=(n, 4))
        logits[:40] = np.round(logits[:40])  # ties: each counts one half in both
        return torch.tensor(logits, dtype=torch.float32), torch.tensor(targets), ["a", "b", "c", "d"], True
    n_classes = 2 if kind == "binary" else 4
    targets = rng.integers(0, n_classes, n)
    logits = np.eye(n_classes)[targets] * 0.9 + rng.normal(size=(n, n_classes))
    logits[:40] = np.round(logits[:40])
    return (torch.tensor(logits, dtype=torch.float32), torch.tensor(targets),
            [f"c{i}" for i in range(n_classes)], False)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multi_label"])
def test_validation_and_test_scoring_agree_on_the_same_predictions(kind):
    logits, targets, classes, multi_label = case(kind)
    val = classification_metrics(logits, targets, classes, multi_label)
    probs = (torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).double().numpy()
    test = evaluate_probabilities(probs, targets.numpy(), classes, multi_label)
    for name in classes:
        assert val["val_auroc_per_class"][name] == pytest.approx(test["per_class"][name]["auroc"]["value"], abs=1e-12)
    assert val["val_auroc"] == pytest.approx(test["macro"]["auroc"]["value"], abs=1e-12)


def test_validation_and_end_of_training_scoring_run_at_the_same_precision(tiny_flags, monkeypatch):
    """bf16 autocast (CPU supports it) stands in for a GPU's mixed precision: the val split's forward
    passes and the test scoring's must both enter it."""
    import core.evaluation.run_model as run_model
    import core.training.components as components
    import core.training.validation as validation

    monkeypatch.setattr(components, "autocast_dtype", lambda *a, **k: torch.bfloat16)
    seen: dict[str, set] = {"validation": set(), "scoring": set()}

    def recording(where, real):
        def autocast(device, amp_dtype):
            seen[where].add(amp_dtype)
            return real(device, amp_dtype)
        return autocast

    monkeypatch.setattr(validation, "autocast", recording("validation", validation.autocast))
    monkeypatch.setattr(run_model, "autocast", recording("scoring", run_model.autocast))
    summary = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 1},
                                     vram_gib=None)).fit()
    assert summary["status"] == "finished" and summary.get("test_auroc") is not None, summary
    assert seen == {"validation": {torch.bfloat16}, "scoring": {torch.bfloat16}}
