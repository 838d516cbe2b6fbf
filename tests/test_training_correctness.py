"""Training correctness at the edges, through real (tiny) engine runs: divergence and non-finite
steps, which epoch is best, classes a val split cannot score, strict summary.json.

docs/MUTATIONS.md lists the deliberate bugs these tests were checked against."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.runs.checkpoint import load_checkpoint
from core.training.trainer import Trainer
from core.events import EpochDone, TrainingWarning
from core.config.resolve import resolve_config
from core.runs.folder import read_metrics, read_summary

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(flags, **kwargs):
    events: list = []
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, **kwargs)
    summary = trainer.fit()
    return trainer, summary, events


def strict_json(path: Path) -> dict:
    """json.loads that refuses NaN/Infinity, as a strict parser (JavaScript, jq) would."""
    def refuse(token):
        raise ValueError(f"{path.name}: non-standard JSON constant {token}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def strict_jsonl(path: Path) -> list[dict]:
    def refuse(token):
        raise ValueError(f"{path.name}: non-standard JSON constant {token}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines()]


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if torch.is_tensor(t) and t.is_floating_point())


class NaNLoss(torch.nn.Module):
    """Wraps the run's criterion: the loss is NaN on the optimizer steps where `bad(trainer)` is true."""

    def __init__(self, inner, trainer, bad):
        super().__init__()
        self.inner, self.trainer, self.bad = inner, trainer, bad

    def forward(self, logits, target):
        loss = self.inner(logits, target)
        return loss * float("nan") if self.bad(self.trainer) else loss


def trainer_with_nan_loss(flags, bad, **kwargs) -> Trainer:
    """A Trainer whose loss turns NaN where `bad(trainer)` says, installed by the fault hook (first step)."""
    trainer: Trainer

    def hook(global_step, n):  # the optimizer step's loss (validation keeps the real one)
        if not isinstance(trainer.stepper.criterion, NaNLoss):
            trainer.stepper.criterion = NaNLoss(trainer.stepper.criterion, trainer, bad)
    trainer = Trainer(resolve_config(flags, vram_gib=None), fault_hook=hook, **kwargs)
    return trainer


# ---------------------------------------------------------------- non-finite steps and divergence

def test_nonfinite_steps_are_skipped_then_stop_keeping_the_last_finite_checkpoint(tiny_flags):
    """Issue 12.1 / 11.6: from epoch 2 on every loss is NaN. Each step is skipped before the optimizer
    step (weights unchanged), the run stops after max_nonfinite_steps in a row as 'diverged', and
    last.pt / best.pt keep epoch 1's finite weights."""
    trainer = trainer_with_nan_loss({**tiny_flags, "epochs": 3, "max_nonfinite_steps": 3},
                                    lambda t: t.pos.epoch >= 1)
    summary = trainer.fit()
    assert summary["status"] == "diverged", summary
    assert summary["nonfinite_steps_skipped"] == 3 and summary["global_step"] == trainer.steps_per_epoch + 3
    assert "3 optimizer steps in a row" in summary["stop_reason"] and "--lr" in summary["stop_reason"]
    last = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    best = load_checkpoint(trainer.run_dir / "checkpoints" / "best.pt")
    assert last["position"]["epoch"] == 1 and best["position"]["epoch"] == 1
    assert all_finite(last["model"]) and all_finite(best["model"])
    # the skipped steps never touched the weights: the live parameters are still epoch 1's (BatchNorm
    # running statistics did see the forward passes, as with a step the fp16 GradScaler skips)
    live = dict(trainer.model.named_parameters())
    assert all(torch.equal(p, last["model"][k]) for k, p in live.items())
    assert strict_json(trainer.run_dir / "summary.json")["status"] == "diverged"


def test_one_nonfinite_step_is_skipped_and_training_goes_on(tiny_flags):
    events: list = []
    trainer = trainer_with_nan_loss({**tiny_flags, "epochs": 1}, lambda t: t.pos.global_step == 2,
                                    on_event=events.append)
    summary = trainer.fit()
    assert summary["status"] == "finished" and summary["nonfinite_steps_skipped"] == 1
    assert math.isfinite(summary["train_loss"])  # the skipped step is not in the running loss
    skipped = [e for e in events if isinstance(e, TrainingWarning) and e.kind == "nonfinite"]
    assert len(skipped) == 1 and "step 3" in skipped[0].message and "skipped" in skipped[0].message


@pytest.mark.parametrize("lr", [10.0, 1e4])
def test_huge_lr_ends_diverged_not_finished(tiny_flags, lr):
    """Issue 11.6: --lr 10 / 1e4 used to end 'finished' with best.pt from garbage epochs."""
    trainer, summary, _ = run({**tiny_flags, "lr": lr, "epochs": 3})
    assert summary["status"] == "diverged", summary
    assert "--lr" in summary["stop_reason"] and f"now {lr:g}" in summary["stop_reason"]
    assert summary["epochs_completed"] < 3 and summary["best_epoch"] in (None, 1)
    for name in ("last.pt", "best.pt"):
        path = trainer.run_dir / "checkpoints" / name
        if path.is_file():
            assert all_finite(load_checkpoint(path)["model"])
    strict_json(trainer.run_dir / "summary.json")
    strict_jsonl(trainer.run_dir / "metrics.jsonl")


def test_checkpoint_refuses_nonfinite_weights(tiny_flags):
    trainer, summary, _ = run({**tiny_flags, "epochs": 1})
    path = trainer.run_dir / "checkpoints" / "last.pt"
    before = path.read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = float("nan")
    assert trainer.save_checkpoint("last.pt", "test") is None
    assert path.read_bytes() == before


# ---------------------------------------------------------------- best.pt and divergence_threshold

def scripted_evaluate(values):
    """Replace validation by scripted metrics per epoch (the rest of the epoch-end wiring is real)."""
    it = iter(values)

    def evaluate(self, dataset, cached=None):
        return dict(next(it))
    return evaluate


def test_best_checkpoint_follows_the_monitor_not_min_delta(tiny_flags, monkeypatch):
    """Issue 12.2: min_delta 0.01 and AUROC 0.800, 0.805, 0.809 -> best.pt is epoch 3."""
    monkeypatch.setattr(Trainer, "evaluate", scripted_evaluate(
        [{"val_auroc": v, "val_loss": 0.5, "val_auroc_per_class": {}} for v in (0.800, 0.805, 0.809)]))
    trainer, summary, _ = run({**tiny_flags, "epochs": 3, "min_delta": 0.01, "early_stopping": 5,
                               "max_steps_per_epoch": 1})
    assert summary["best_epoch"] == 3 and summary["best_value"] == 0.809
    assert load_checkpoint(trainer.run_dir / "checkpoints" / "best.pt")["position"]["epoch"] == 3


def test_divergence_threshold_reads_the_monitor_in_a_run(tiny_flags, monkeypatch):
    """Issue 12.3: a val_loss above the threshold does not stop an AUROC run; an AUROC below it does,
    and that epoch is not saved as best."""
    monkeypatch.setattr(Trainer, "evaluate", scripted_evaluate(
        [{"val_auroc": 0.9, "val_loss": 50.0}, {"val_auroc": 0.95, "val_loss": 60.0},
         {"val_auroc": 0.3, "val_loss": 0.7}, {"val_auroc": 0.99, "val_loss": 0.6}]))
    trainer, summary, _ = run({**tiny_flags, "epochs": 4, "divergence_threshold": 0.5, "max_steps_per_epoch": 1})
    assert summary["status"] == "early_stopped" and summary["epochs_completed"] == 3
    assert summary["best_epoch"] == 2 and "divergence threshold" in summary["stop_reason"]
    assert load_checkpoint(trainer.run_dir / "checkpoints" / "best.pt")["position"]["epoch"] == 2


# ---------------------------------------------------------------- classes a val split cannot score

def write_csv_dataset(root: Path, train_labels: list[str], val_labels: list[str], size: int = 32) -> str:
    """Noise images whose brightness depends on the label; returns the csv name."""
    rng = np.random.default_rng(0)
    levels = {label: 30 + 50 * (k % 4) for k, label in enumerate(sorted(set(train_labels) | set(val_labels)))}
    rows = ["path,labels,split"]
    for split, labels in (("train", train_labels), ("val", val_labels)):
        for i, label in enumerate(labels):
            name = f"img/{split}{i}.png"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            img = np.clip(rng.normal(levels[label], 30, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name)
            rows.append(f"{name},{label},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return "labels.csv"


def csv_flags(tiny_flags, root: Path, **kw) -> dict:
    flags = {**tiny_flags, "dataset": "csv", "data_dir": str(root), "csv": "labels.csv",
             "cache_dir": str(root / "cache"), "batch_size": 8, "epochs": 2}
    flags.update(kw)
    return flags


def test_val_split_missing_a_class_names_it_and_keeps_training(tiny_flags, tmp_path):
    """Issue 11.10 / 12.8: val has no 'effusion' image. The run goes on, val_auroc is the mean of the
    other classes, summary.json is strict JSON with the class excluded (null) and the reason named,
    and the live screen's per-class panel shows it."""
    write_csv_dataset(tmp_path, ["normal", "effusion", "nodule"] * 8, ["normal", "nodule"] * 4)
    trainer, summary, events = run(csv_flags(tiny_flags, tmp_path))
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2
    per = summary["val_auroc_per_class"]
    assert per["effusion"] is None and per["normal"] is not None
    assert summary["val_auroc"] == pytest.approx((per["normal"] + per["nodule"]) / 2)
    assert "no image of this class in val" in summary["val_auroc_excluded"]["effusion"]
    assert strict_json(trainer.run_dir / "summary.json") == summary
    warned = [e.message for e in events if isinstance(e, TrainingWarning) and e.kind == "config"]
    assert any("'effusion'" in m and "val split" in m for m in warned), warned

    from medcls_tui.run_state import RunState
    from medcls_tui.widgets.run_widgets import class_auroc_text

    state = RunState.from_records(read_metrics(trainer.run_dir), read_summary(trainer.run_dir))
    panel = class_auroc_text(state).plain
    assert "no image of this class in val" in panel and "effusion" in panel


def test_binary_val_split_with_one_class_monitors_val_loss_instead_of_stopping(tiny_flags, tmp_path):
    """Issue 11.10: used to stop at epoch 1 with 'val_auroc is nan'."""
    write_csv_dataset(tmp_path, ["normal", "covid"] * 12, ["normal"] * 8)
    trainer, summary, events = run(csv_flags(tiny_flags, tmp_path))
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2
    assert summary["monitor"] == "val_loss" and summary["best_epoch"] is not None
    assert summary["val_auroc"] is None and "val has only 'normal' images" in summary["val_auroc_excluded"]["covid"]
    warned = " ".join(e.message for e in events if isinstance(e, TrainingWarning))
    assert "monitoring val_loss instead" in warned
    strict_json(trainer.run_dir / "summary.json")
    epochs = [r for r in strict_jsonl(trainer.run_dir / "metrics.jsonl") if r["event"] == "EpochDone"]
    assert len(epochs) == 2 and epochs[0]["metrics"]["val_auroc"] is None
