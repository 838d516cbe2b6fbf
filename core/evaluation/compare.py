"""Is run B really better than run A? (`medcls compare`)

Each run's model scores the same split; differences of per-class and macro AUROC get a paired
bootstrap interval (the same resampled patients for every run, so the runs' shared noise cancels)
and, for two single runs, DeLong's p-value per class; accuracy, sensitivity and specificity are
compared at each run's own thresholds (McNemar's exact test for accuracy). Groups of seeds
(`A1,A2,A3` vs `B1,B2,B3`) compare mean AUROCs, with each group's spread across seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from core.evaluation.delong import delong_test
from core.evaluation.metrics import (bootstrap_groups, bootstrap_weights, decisions, one_hot, predicted_class,
                                     weighted_rank_metrics)
from core.evaluation.run_model import RunModelError

RankFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class ScoredRun:
    """One run's probabilities on a split, with what is needed to compare it."""

    name: str
    classes: list[str]
    multi_label: bool
    ids: list[str]
    patients: Optional[list[str]]
    targets: np.ndarray
    probs: np.ndarray
    thresholds: Optional[list]
    config: dict = field(default_factory=dict)


def aligned(runs: list[ScoredRun]) -> tuple[list[ScoredRun], dict]:
    """The runs restricted to the images every one of them scored, in the first run's order, and how
    many that is; RunModelError when classes or labels disagree or no image is shared."""
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes or run.multi_label != first.multi_label:
            raise RunModelError(f"compare: {run.name} predicts {run.classes} but {first.name} predicts "
                                f"{first.classes}; runs must share their classes")
    shared = set(first.ids)
    for run in runs[1:]:
        shared &= set(run.ids)
    if not shared:
        raise RunModelError("compare: the runs' splits hold no image in common (different data or seeds of the "
                            "split); compare runs scored on the same images")
    order = [i for i in first.ids if i in shared]
    out = []
    for run in runs:
        where = {image: k for k, image in enumerate(run.ids)}
        idx = np.array([where[i] for i in order])
        out.append(ScoredRun(run.name, run.classes, run.multi_label, order,
                             [run.patients[k] for k in idx] if run.patients is not None else None,
                             np.asarray(run.targets)[idx], run.probs[idx], run.thresholds, run.config))
    for run in out[1:]:
        if not np.array_equal(np.nan_to_num(run.targets), np.nan_to_num(out[0].targets)):
            raise RunModelError(f"compare: {run.name} and {out[0].name} label the shared images differently")
    sizes = {run.name: len(run.ids) for run in runs}
    return out, {"shared_images": len(order), "images_per_run": sizes,
                 "all_shared": all(n == len(order) for n in sizes.values())}


def _mean_auc(group: list[ScoredRun], labels: np.ndarray, c: int, weights: np.ndarray, rank: RankFn) -> np.ndarray:
    return np.mean([rank(run.probs[:, c], labels[:, c], weights) for run in group], axis=0)


def paired_bootstrap(group_a: list[ScoredRun], group_b: list[ScoredRun], labels: np.ndarray, n_boot: int, seed: int,
                     rank: RankFn) -> np.ndarray:
    """(n_boot, C) differences of mean AUROC, B - A, every run scored on the same resampled patients."""
    unit, n_units, _ = bootstrap_groups(group_a[0].patients, len(labels))
    chunks = []
    for w in bootstrap_weights(unit, n_units, n_boot, seed):
        chunks.append(np.stack([_mean_auc(group_b, labels, c, w, rank) - _mean_auc(group_a, labels, c, w, rank)
                                for c in range(labels.shape[1])], axis=1))
    return np.concatenate(chunks) if chunks else np.zeros((0, labels.shape[1]))


def _auc(scores, labels, weights) -> np.ndarray:
    return weighted_rank_metrics(scores, labels, weights)[0]


def _interval(samples: np.ndarray) -> Optional[list[float]]:
    good = samples[np.isfinite(samples)]
    return [float(np.percentile(good, 2.5)), float(np.percentile(good, 97.5))] if len(good) else None


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided McNemar test on the images exactly one of the two got right."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def operating_figures(run: ScoredRun, labels: np.ndarray) -> dict:
    """Accuracy and per-class sensitivity/specificity at the run's own thresholds (its decision rule)."""
    yes = decisions(run.probs, run.multi_label, run.thresholds)
    if run.multi_label:
        correct = (yes == labels).all(axis=1)
    else:
        correct = predicted_class(run.probs, run.thresholds) == np.asarray(run.targets, dtype=np.int64)
    sens = [float((yes[:, c] & labels[:, c]).sum() / labels[:, c].sum()) if labels[:, c].any() else None
            for c in range(labels.shape[1])]
    spec = [float((~yes[:, c] & ~labels[:, c]).sum() / (~labels[:, c]).sum()) if (~labels[:, c]).any() else None
            for c in range(labels.shape[1])]
    return {"correct": correct, "accuracy": float(correct.mean()), "sensitivity": sens, "specificity": spec}


def config_differences(runs: list[ScoredRun]) -> dict[str, dict[str, object]]:
    keys = sorted({k for run in runs for k in run.config} - {"run_name", "output_dir", "name", "description"})
    return {k: {run.name: run.config.get(k) for run in runs} for k in keys
            if len({repr(run.config.get(k)) for run in runs}) > 1}


def compare_groups(group_a: list[ScoredRun], group_b: list[ScoredRun], n_boot: int = 1000, seed: int = 0,
                   rank: RankFn = _auc) -> dict:
    """Every figure of one comparison (B against A); runs must already be aligned."""
    first = group_a[0]
    labels = one_hot(first.targets, len(first.classes), first.multi_label)
    ones = np.ones((1, len(labels)))
    boots = paired_bootstrap(group_a, group_b, labels, n_boot, seed, rank)
    single = len(group_a) == len(group_b) == 1
    per_class = {}
    for c, name in enumerate(first.classes):
        a_runs = [float(_auc(r.probs[:, c], labels[:, c], ones)[0]) for r in group_a]
        b_runs = [float(_auc(r.probs[:, c], labels[:, c], ones)[0]) for r in group_b]
        entry = {"auroc_a": float(np.mean(a_runs)), "auroc_b": float(np.mean(b_runs)),
                 "difference": float(np.mean(b_runs) - np.mean(a_runs)), "ci": _interval(boots[:, c]),
                 "spread_a": float(np.std(a_runs, ddof=1)) if len(a_runs) > 1 else None,
                 "spread_b": float(np.std(b_runs, ddof=1)) if len(b_runs) > 1 else None}
        if single and labels[:, c].any() and not labels[:, c].all():
            entry["delong_p"] = delong_test(group_a[0].probs[:, c], group_b[0].probs[:, c], labels[:, c]).p_value
        per_class[name] = entry
    defined = [e["difference"] for e in per_class.values() if np.isfinite(e["difference"])]
    with np.errstate(all="ignore"):
        macro_boot = np.nanmean(boots, axis=1) if len(boots) else boots
    out = {"a": [r.name for r in group_a], "b": [r.name for r in group_b], "per_class": per_class,
           "macro": {"difference": float(np.mean(defined)) if defined else None, "ci": _interval(macro_boot)},
           "bootstrap": {"n": n_boot, "seed": seed, "paired": True,
                         "unit": bootstrap_groups(first.patients, len(labels))[2]}}
    ops_a = [operating_figures(r, labels) for r in group_a]
    ops_b = [operating_figures(r, labels) for r in group_b]
    out["operating"] = {
        "accuracy_a": float(np.mean([o["accuracy"] for o in ops_a])),
        "accuracy_b": float(np.mean([o["accuracy"] for o in ops_b])),
        "sensitivity_difference": _mean_difference(ops_a, ops_b, "sensitivity", first.classes),
        "specificity_difference": _mean_difference(ops_a, ops_b, "specificity", first.classes),
    }
    if single:
        out["operating"]["mcnemar_p"] = mcnemar_p(ops_a[0]["correct"], ops_b[0]["correct"])
    return out


def _mean_difference(ops_a: list[dict], ops_b: list[dict], key: str, classes: list[str]) -> dict:
    out = {}
    for c, name in enumerate(classes):
        a = [o[key][c] for o in ops_a if o[key][c] is not None]
        b = [o[key][c] for o in ops_b if o[key][c] is not None]
        out[name] = float(np.mean(b) - np.mean(a)) if a and b else None
    return out


def compare_runs(groups: list[list[ScoredRun]], split: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """The first group against each of the others, on the images all runs share."""
    flat, images = aligned([run for group in groups for run in group])
    by_name = {run.name: run for run in flat}
    groups = [[by_name[run.name] for run in group] for group in groups]
    return {"split": split, "images": images, "config_differences": config_differences(flat),
            "comparisons": [compare_groups(groups[0], other, n_boot, seed) for other in groups[1:]]}


def write_comparison(result: dict, out_dir: Path) -> dict[str, Path]:
    import json

    from core.evaluation.compare_report import comparison_markdown
    from core.runs.folder import write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"compare_{result['split']}.json", "md": out_dir / f"compare_{result['split']}.md"}
    write_json_atomic(paths["json"], json.loads(json.dumps(result, default=float)))
    paths["md"].write_text(comparison_markdown(result), encoding="utf-8")
    return paths
