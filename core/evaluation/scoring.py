"""Scoring a split: at the end of training (best checkpoint on the test split, once) and for `medcls eval`.

Thresholds always come from the validation split; the test split is only ever scored, never used
to choose an epoch or a threshold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..checkpoint import load_checkpoint
from ..data.base import DatasetBundle
from . import thresholds as thr
from .metrics import BootstrapSettings, evaluate_probabilities
from .report import summary_figures, write_report
from .run_model import ProgressFn, RunModel, RunModelError, load_run_model, predict_table

SPLITS = ("val", "test")
DEFAULT_BOOTSTRAP = 1000


def split_table(bundle: DatasetBundle, split: str):
    if split not in SPLITS:
        raise RunModelError(f"split: '{split}' is not one of {', '.join(SPLITS)}")
    table = getattr(bundle, split)
    if table is None or len(table) == 0:
        raise RunModelError(f"split: dataset '{bundle.name}' has no {split} split")
    return table


def score(probs: np.ndarray, table, bundle: DatasetBundle, thresholds: Optional[dict], n_boot: int, seed: int,
          progress: Optional[ProgressFn] = None) -> dict:
    """evaluate_probabilities with the table's targets, patients and domains."""
    return evaluate_probabilities(
        probs, np.asarray(table.targets), bundle.classes, bundle.multi_label,
        thresholds=thr.as_list(thresholds, bundle.classes), patients=table.patients,
        domains=np.asarray(table.domains), domain_names=bundle.domain_names,
        bootstrap=BootstrapSettings(n=n_boot, seed=seed), progress=progress)


def ensure_thresholds(run_dir: Path, val_probs: Callable[[], np.ndarray], bundle: DatasetBundle,
                      method: Optional[str], target_sensitivity: float, checkpoint: str) -> dict:
    """The run's thresholds.json; chosen on val (and saved) when missing or when a method is asked for."""
    stored = thr.load_thresholds(run_dir)
    if stored is not None and method is None:
        return stored
    method = method or "youden"
    chosen = thr.choose_thresholds(val_probs(), np.asarray(bundle.val.targets), bundle.classes, bundle.multi_label,
                                   method, target_sensitivity)
    thr.save_thresholds(run_dir, chosen, method, target_sensitivity, checkpoint)
    return thr.load_thresholds(run_dir)


def score_test_after_training(trainer) -> dict:
    """Engine hook: best checkpoint, thresholds (Youden) on val, test split scored once; `test_*` figures.

    Returns {} when the dataset has no test split or no best checkpoint exists."""
    from ..events import DataProgress
    from ..runs import CHECKPOINT_DIR

    bundle: DatasetBundle = trainer.bundle
    best = trainer.run_dir / CHECKPOINT_DIR / "best.pt"
    if bundle.test is None or len(bundle.test) == 0 or not best.is_file():
        return {}
    trainer.model.load_state_dict(load_checkpoint(best)["model"])

    def progress(done: int, total: int, desc: str) -> None:
        trainer.on_event(DataProgress(done=done, total=total, description=desc))

    def probs(table, what: str) -> np.ndarray:
        return predict_table(trainer.model, trainer.normalize, table, bundle.multi_label, trainer.batch_size,
                             trainer.num_workers, trainer.device.type == "cuda", progress, what)

    # a retrained (resumed) run re-chooses: the best checkpoint may have changed since
    stored = ensure_thresholds(trainer.run_dir, lambda: probs(bundle.val, "thresholds on val (best checkpoint)"),
                               bundle, "youden", 0.95, "best")
    report = score(probs(bundle.test, "scoring test split (best checkpoint)"), bundle.test, bundle, stored,
                   DEFAULT_BOOTSTRAP, trainer.cfg.seed, progress)
    report.update(run=trainer.run_dir.name, checkpoint="best", split="test", thresholds_info=_thr_info(stored))
    write_report(trainer.run_dir, "test", report, plots=False)
    return {**summary_figures(report), "test_checkpoint": "best", "test_thresholds": stored["method"]}


def _thr_info(stored: dict) -> dict:
    return {k: stored.get(k) for k in ("method", "target_sensitivity", "chosen_on", "checkpoint")}


def evaluate_run(run_dir: Path, split: str = "test", checkpoint: str = "best", data_dir: Optional[str] = None,
                 threshold_method: Optional[str] = None, target_sensitivity: float = 0.95,
                 n_boot: int = DEFAULT_BOOTSTRAP, plots: bool = True, device: str = "cpu",
                 progress: Optional[ProgressFn] = None) -> tuple[dict, dict[str, Path]]:
    """`medcls eval`: load the run, its dataset and thresholds, score the split, write the report files."""
    from ..data import load_dataset

    progress = progress or (lambda d, t, desc: None)
    rm: RunModel = load_run_model(run_dir, checkpoint, device)
    cfg = rm.config if data_dir is None else rm.config.model_copy(update={"data_dir": data_dir})
    bundle = load_dataset(cfg, progress)
    if list(bundle.classes) != list(rm.classes):
        raise RunModelError(f"data: the dataset's classes {bundle.classes} differ from the run's {rm.classes}")
    table = split_table(bundle, split)
    batch = int(cfg.batch_size) if isinstance(cfg.batch_size, int) else 64

    def probs(tab, what: str) -> np.ndarray:
        return predict_table(rm.model, rm.normalize, tab, rm.multi_label, batch, 0, False, progress, what)

    val_cache: dict = {}

    def val_probs() -> np.ndarray:
        if "p" not in val_cache:
            val_cache["p"] = probs(bundle.val, f"thresholds on val ({checkpoint} checkpoint)")
        return val_cache["p"]

    stored = ensure_thresholds(rm.run_dir, val_probs, bundle, threshold_method, target_sensitivity, checkpoint)
    split_probs = val_probs() if split == "val" else probs(table, f"scoring {split} split ({checkpoint} checkpoint)")
    report = score(split_probs, table, bundle, stored, n_boot, cfg.seed, progress)
    report.update(run=rm.run_dir.name, checkpoint=checkpoint, split=split, thresholds_info=_thr_info(stored))
    return report, write_report(rm.run_dir, split, report, plots=plots)
