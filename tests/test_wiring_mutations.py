"""Wiring through the engine that deliberate bugs used to slip past (issue 12): metrics of a run,
pos_weight from train counts only, the LR of every optimizer step, the frozen linear-probe backbone,
XDomainMix's discard draw. docs/MUTATIONS.md lists the bug each test was seen to catch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TINY
from core.training.trainer import Trainer
from core.events import StepDone
from core.training.losses import pos_weight_from_counts
from core.config.resolve import resolve_config
from core.training.schedule import lr_factor
from test_training_correctness import write_csv_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trainer_for(flags, hook=None, **kwargs) -> tuple[Trainer, list]:
    events: list = []
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, fault_hook=hook, **kwargs)
    return trainer, events


# ---------------------------------------------------------------- multi-label run on a csv table

@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    """Findings A, B, C; C is never positive in val (one label value), and val's A/B rates differ
    from train's so train-only and train+val pos_weight differ."""
    root = tmp_path_factory.mktemp("ml")
    train = ["A", "B", "A|C", "", "C", "A|B", "", "B|C"] * 3
    val = ["A", "A", "A|B", "B", "", "A"] * 2
    write_csv_dataset(root, train, val)
    flags = {**TINY, "output_dir": str(root / "runs"), "dataset": "csv", "data_dir": str(root), "csv": "labels.csv",
             "cache_dir": str(root / "cache"), "multi_label": True, "batch_size": 8, "epochs": 1}
    trainer, events = trainer_for(flags)
    summary = trainer.fit()
    return trainer, summary


def test_multilabel_finding_with_one_value_in_val_is_left_out_not_zero(multilabel_run):
    trainer, summary = multilabel_run
    assert summary["status"] == "finished"
    per = summary["val_auroc_per_class"]
    assert per["C"] is None and per["A"] is not None and per["B"] is not None
    assert summary["val_auroc"] == pytest.approx((per["A"] + per["B"]) / 2)
    assert summary["val_auroc_excluded"] == {"C": "no positive image in val"}


def test_pos_weight_comes_from_train_counts_only(multilabel_run):
    trainer, _ = multilabel_run
    bundle = trainer.bundle
    train_only = pos_weight_from_counts(bundle.class_counts("train"), len(bundle.train))
    leaked = pos_weight_from_counts(bundle.class_counts("train") + bundle.class_counts("val"),
                                    len(bundle.train) + len(bundle.val))
    assert not torch.allclose(train_only, leaked), "the dataset must tell the two apart"
    assert torch.equal(trainer.criterion.pos_weight.cpu(), train_only)


# ---------------------------------------------------------------- LR per optimizer step

def test_lr_is_set_on_every_optimizer_step(tmp_path):
    """The LR each step's update used (read inside the step) follows warmup + cosine per step."""
    seen: dict[int, float] = {}
    box: dict = {}

    def hook(global_step, n):
        seen.setdefault(global_step, box["t"].optimizer.param_groups[-1]["lr"])
    flags = {**TINY, "output_dir": str(tmp_path), "epochs": 2, "warmup_epochs": 0.5, "lr": 1e-3}
    trainer, events = trainer_for(flags, hook)
    box["t"] = trainer
    assert trainer.fit()["status"] == "finished"
    total, warm = trainer.total_steps, trainer.warmup_steps
    assert warm >= 1 and sorted(seen) == list(range(total))
    for step, lr in seen.items():
        assert lr == pytest.approx(1e-3 * lr_factor(step, total, warm, trainer.cfg.min_lr_ratio)), step
    first_epoch = [seen[s] for s in range(trainer.steps_per_epoch)]
    assert len(set(first_epoch)) > 1, "the LR must change within an epoch"
    reported = [e.lr for e in events if isinstance(e, StepDone)]
    assert reported == [seen[s] for s in range(total)]


# ---------------------------------------------------------------- linear probe keeps the backbone

@pytest.mark.parametrize("augmentation", ["none", "standard"])
def test_linear_probe_backbone_is_frozen_in_an_engine_run(tmp_path, augmentation):
    """'none': cached features; 'standard': images through the frozen backbone every step. Either
    way the backbone's weights and BatchNorm statistics end exactly as they started."""
    start: dict = {}
    head_start: dict = {}
    box: dict = {}

    def hook(global_step, n):
        if not start:
            start.update({k: v.clone() for k, v in box["t"].model.backbone.state_dict().items()})
            head_start.update({k: v.clone() for k, v in box["t"].model.classifier.state_dict().items()})
    flags = {**TINY, "output_dir": str(tmp_path), "mode": "linear_probe", "augmentation": augmentation,
             "epochs": 2}
    trainer, _ = trainer_for(flags, hook)
    box["t"] = trainer
    assert trainer.fit()["status"] == "finished"
    assert trainer.cache_features == (augmentation == "none")
    end = trainer.model.backbone.state_dict()
    assert start and all(torch.equal(start[k], end[k]) for k in start), "backbone weights or BN statistics changed"
    assert not any(p.requires_grad for p in trainer.model.backbone.parameters())
    head = {id(p) for p in trainer.model.classifier.parameters()}
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert optimized and optimized <= head
    head_end = trainer.model.classifier.state_dict()
    assert any(not torch.equal(head_start[k], head_end[k]) for k in head_start), "the head must train"


# ---------------------------------------------------------------- XDomainMix's discard draw

@pytest.mark.parametrize("discard_prob", [1.0, 0.0])
def test_xdomainmix_discard_draw_reaches_the_mixed_features(tmp_path, discard_prob):
    """In a run, the mixed map is Z~ with the csds terms dropped exactly when the discard draw says so
    (discard 1: always dropped, 0: always kept), recomputed from the recorded masks and partners."""
    box: dict = {}

    def hook(global_step, n):
        box["t"].strategy.record = True
    flags = {**TINY, "output_dir": str(tmp_path), "augmentation": "xdomainmix", "xdm_warmup_steps": 0,
             "xdm_discard_prob": discard_prob, "epochs": 1, "max_steps_per_epoch": 2}
    trainer, _ = trainer_for(flags, hook)
    box["t"] = trainer
    assert trainer.fit()["status"] == "finished"
    info = trainer.strategy.last_info
    assert info["keep_csds"] is (discard_prob == 0.0)
    from core.augment.xdomainmix import mix_features

    def mixed(keep):
        return mix_features(info["feats"], info["cs"], info["ds"], info["j"], info["k"], info["lam"][0],
                            info["lam"][1], keep, "NCHW")
    expected, other = mixed(discard_prob == 0.0), mixed(discard_prob != 0.0)
    assert not torch.allclose(expected, other), "the csds terms must matter in this batch"
    assert torch.allclose(info["mixed"], expected, atol=1e-6)
