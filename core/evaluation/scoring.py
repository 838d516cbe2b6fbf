"""Scoring a split: at the end of training (best checkpoint on the test split, once) and for `medcls eval`.

Thresholds always come from the validation split; the test split is only ever scored, never used
to choose an epoch or a threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from core.runs.checkpoint import load_checkpoint
from core.data.base import DatasetBundle
from core.evaluation import thresholds as thr
from core.evaluation.metrics import BootstrapSettings, evaluate_probabilities
from core.evaluation.report import summary_figures, write_report
from core.evaluation.shortcut import ShortcutSettings
from core.evaluation.shortcut import analyse as shortcut_analysis
from core.evaluation.decision import rule_for
from core.models.pretrained import strip_wrapper_prefixes
from core.evaluation.run_model import (RUN_PREFIXES, ProgressFn, RunModel, RunModelError, checkpoint_path, load_run_model,
                        predict_table)

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
          progress: Optional[ProgressFn] = None, shortcut: ShortcutSettings = ShortcutSettings()) -> dict:
    """evaluate_probabilities with the table's targets, patients and domains, under the run's decision rule,
    and the shortcut checks (source-only baseline, within-source AUROC) where the data has sources."""
    bootstrap = BootstrapSettings(n=n_boot, seed=seed)
    report = evaluate_probabilities(
        probs, np.asarray(table.targets), bundle.classes, bundle.multi_label,
        thresholds=thr.as_list(thresholds, bundle.classes), patients=table.patients,
        domains=np.asarray(table.domains), domain_names=bundle.domain_names,
        bootstrap=bootstrap, progress=progress)
    report["decision_rule"] = rule_for(len(bundle.classes), bundle.multi_label)
    section = shortcut_analysis(probs, table, bundle, bootstrap, report, shortcut)
    if section is not None:
        report["shortcut"] = section
    return report


class ScoringCancelled(Exception):
    """Quit, SIGTERM or Ctrl-C arrived while scoring: nothing is written, `medcls eval` can do it later."""


def stoppable(progress: Optional[ProgressFn], should_stop: Optional[Callable[[], bool]]) -> Optional[ProgressFn]:
    """A progress callback that also ends the scoring (ScoringCancelled) once a stop was asked for."""
    if should_stop is None:
        return progress

    def report(done: int, total: int, desc: str) -> None:
        if should_stop():
            raise ScoringCancelled(desc)
        if progress is not None:
            progress(done, total, desc)

    return report


def ensure_thresholds(run_dir: Path, val_probs: Callable[[], np.ndarray], bundle: DatasetBundle,
                      method: Optional[str], target_sensitivity: float, checkpoint: str,
                      digest: Optional[str] = None) -> dict:
    """This checkpoint's thresholds from thresholds.json; chosen on val (and saved under the checkpoint)
    when missing, when chosen on other weights (digest), or when a method is asked for. Asking for a
    method never reads the old file first, so a corrupt file never blocks its own repair."""
    if method is None:
        try:
            stored = thr.load_thresholds(run_dir, checkpoint)
        except thr.ThresholdError as err:
            raise thr.ThresholdError(f"{err}; `--thresholds youden` re-chooses them and rewrites the file") from None
        if stored is not None and (not stored.get("digest") or digest is None or stored["digest"] == digest):
            return stored
    method = method or "youden"
    chosen = thr.choose_thresholds(val_probs(), np.asarray(bundle.val.targets), bundle.classes, bundle.multi_label,
                                   method, target_sensitivity)
    thr.save_thresholds(run_dir, chosen, method, target_sensitivity, checkpoint, digest,
                        rule_for(len(bundle.classes), bundle.multi_label))
    return thr.load_thresholds(run_dir, checkpoint)


@dataclass
class ScoringModel:
    """The trained model as scoring runs it: validation's normalisation, precision and batches."""

    model: nn.Module
    normalize: Callable[[torch.Tensor], torch.Tensor]
    amp_dtype: Optional[torch.dtype]
    batch_size: int
    num_workers: int
    pin_memory: bool


def score_test_after_training(run_dir: Path, bundle: DatasetBundle, scorer: ScoringModel, seed: int,
                              on_event: Callable, should_stop: Optional[Callable[[], bool]] = None,
                              shortcut: ShortcutSettings = ShortcutSettings()) -> dict:
    """End of training: best checkpoint, thresholds (Youden) on val, test split scored once; `test_*` figures.

    Returns {} when the dataset has no test split or no best checkpoint exists. Runs at validation's
    precision (scorer.amp_dtype). `should_stop` is polled between batches and bootstrap chunks
    (ScoringCancelled)."""
    from core.events import DataProgress
    from core.runs.folder import CHECKPOINT_DIR

    best = run_dir / CHECKPOINT_DIR / "best.pt"
    if bundle.test is None or len(bundle.test) == 0 or not best.is_file():
        return {}
    scorer.model.load_state_dict(strip_wrapper_prefixes(load_checkpoint(best)["model"], RUN_PREFIXES))

    def report_progress(done: int, total: int, desc: str) -> None:
        on_event(DataProgress(done=done, total=total, description=desc))

    progress = stoppable(report_progress, should_stop)

    def probs(table, what: str) -> np.ndarray:
        return predict_table(scorer.model, scorer.normalize, table, bundle.multi_label, scorer.batch_size,
                             scorer.num_workers, scorer.pin_memory, progress, what, amp_dtype=scorer.amp_dtype)

    # a retrained (resumed) run re-chooses: the best checkpoint may have changed since
    stored = ensure_thresholds(run_dir, lambda: probs(bundle.val, "thresholds on val (best checkpoint)"),
                               bundle, "youden", 0.95, "best", thr.checkpoint_digest(best))
    report = score(probs(bundle.test, "scoring test split (best checkpoint)"), bundle.test, bundle, stored,
                   DEFAULT_BOOTSTRAP, seed, progress, shortcut)
    report.update(run=run_dir.name, checkpoint="best", split="test", thresholds_info=_thr_info(stored))
    write_report(run_dir, "test", report, plots=False)
    return {**summary_figures(report), "test_checkpoint": "best", "test_thresholds": stored["method"],
            "test_decision": stored.get("rule")}


def _thr_info(stored: dict) -> dict:
    return {k: stored.get(k) for k in ("method", "rule", "target_sensitivity", "chosen_on", "checkpoint", "digest")}


def evaluate_run(run_dir: Path, split: str = "test", checkpoint: str = "best", data_dir: Optional[str] = None,
                 threshold_method: Optional[str] = None, target_sensitivity: float = 0.95,
                 n_boot: int = DEFAULT_BOOTSTRAP, plots: bool = True, device: str = "cpu",
                 progress: Optional[ProgressFn] = None,
                 should_stop: Optional[Callable[[], bool]] = None,
                 domain_probe: bool = False) -> tuple[dict, dict[str, Path]]:
    """`medcls eval`: load the run, its dataset and thresholds, score the split, write the report files.
    `should_stop` (the app leaving the screen) ends it with ScoringCancelled before anything is written."""
    from core.data import load_dataset

    progress = stoppable(progress or (lambda d, t, desc: None), should_stop)
    rm: RunModel = load_run_model(run_dir, checkpoint, device)
    cfg = rm.config if data_dir is None else rm.config.model_copy(update={"data_dir": data_dir})
    bundle = load_dataset(cfg, progress)
    if list(bundle.classes) != list(rm.classes):
        raise RunModelError(f"data: the dataset's classes {bundle.classes} differ from the run's {rm.classes}")
    table = split_table(bundle, split)
    batch = int(cfg.batch_size) if isinstance(cfg.batch_size, int) else 64

    def probs(tab, what: str) -> np.ndarray:
        return predict_table(rm.model, rm.normalize, tab, rm.multi_label, batch, 0, False, progress, what,
                             amp_dtype=rm.amp_dtype)

    val_cache: dict = {}

    def val_probs() -> np.ndarray:
        if "p" not in val_cache:
            val_cache["p"] = probs(bundle.val, f"thresholds on val ({checkpoint} checkpoint)")
        return val_cache["p"]

    digest = thr.checkpoint_digest(checkpoint_path(rm.run_dir, checkpoint))
    stored = ensure_thresholds(rm.run_dir, val_probs, bundle, threshold_method, target_sensitivity, checkpoint, digest)
    split_probs = val_probs() if split == "val" else probs(table, f"scoring {split} split ({checkpoint} checkpoint)")
    report = score(split_probs, table, bundle, stored, n_boot, cfg.seed, progress, ShortcutSettings.from_config(cfg))
    report.update(run=rm.run_dir.name, checkpoint=checkpoint, split=split, thresholds_info=_thr_info(stored))
    if domain_probe:
        from core.evaluation.domain_probe import domain_probe as probe
        from core.evaluation.domain_probe import penultimate_features

        if len(bundle.domain_names) < 2 or len(np.unique(table.domains)) < 2:
            raise RunModelError(f"--domain_probe: the {split} split of dataset '{bundle.name}' holds one source "
                                "(domain): there is no source to predict")
        feats = penultimate_features(rm.model, rm.normalize, table, batch, progress)
        report["domain_probe"] = probe(feats, np.asarray(table.domains), table.patients, bundle.domain_names,
                                       seed=cfg.seed)
    return report, write_report(rm.run_dir, split, report, plots=plots)
