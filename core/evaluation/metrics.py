"""Per-class diagnostic metrics on probabilities, with seeded bootstrap CIs (by patient when known).

Pure numpy: the same code scores a split at the end of training, in `medcls eval` and in tests.
A class without positives or without negatives in a split has undefined AUROC/AP/sensitivity or
specificity: reported as None, never 0.5 and never a crash. Macro means average the defined classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

CURVE_POINTS = 101
"""ROC/PR curves are stored at most this many points (enough for a plot, small in JSON)."""
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")
RANK_METRICS = ("auroc", "ap")


# ---------------------------------------------------------------- single binary problems
def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (the Mann-Whitney convention)."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (tied scores count one half); None without both classes."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _operating_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, true positives, false positives) for `score >= threshold` at each distinct score."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = (last_of_group + 1) - tp
    return s[last_of_group], tp, fp


def average_precision(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Step-wise AP = sum over thresholds of (recall gain) x precision; None without positives."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        return None  # without negatives AP is 1 whatever the model does: not a measure of it
    _, tp, fp = _operating_points(np.asarray(scores, dtype=np.float64), labels)
    precision = tp / (tp + fp)
    recall_gain = np.diff(np.r_[0.0, tp / n_pos])
    return float(np.sum(recall_gain * precision))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fpr, tpr, thresholds) starting at (0, 0) with threshold +inf; None without both classes."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    thr, tp, fp = _operating_points(np.asarray(scores, dtype=np.float64), labels)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thr]


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(recall, precision) from the highest threshold down; None without positives."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    _, tp, fp = _operating_points(np.asarray(scores, dtype=np.float64), labels)
    return np.r_[0.0, tp / n_pos], np.r_[1.0, tp / (tp + fp)]


def _ratio(num: float, den: float) -> Optional[float]:
    return float(num / den) if den > 0 else None


def threshold_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Optional[float]]:
    """Sensitivity, specificity, PPV, NPV and F1 of yes/no decisions; None where a denominator is 0."""
    p, y = np.asarray(predicted).astype(bool), np.asarray(labels).astype(bool)
    tp = float(np.sum(p & y))
    fp = float(np.sum(p & ~y))
    fn = float(np.sum(~p & y))
    tn = float(np.sum(~p & ~y))
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn) if tp + fn > 0 else None}


def _counts(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    p, y = predicted.astype(bool), labels.astype(bool)
    return np.array([np.sum(p & y), np.sum(p & ~y), np.sum(~p & y), np.sum(~p & ~y)], dtype=np.float64)


def _from_counts(c: np.ndarray) -> dict[str, Optional[float]]:
    tp, fp, fn, tn = c
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn) if tp + fn > 0 else None}


# ---------------------------------------------------------------- calibration
def calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error over equal-width bins, and the reliability bins behind it."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if len(confidence) == 0:
        return {"ece": None, "bins": []}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        sel = which == b
        count = int(sel.sum())
        mean_conf = float(confidence[sel].mean()) if count else None
        freq = float(correct[sel].mean()) if count else None
        if count:
            ece += count / len(confidence) * abs(mean_conf - freq)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": mean_conf, "observed": freq})
    return {"ece": float(ece), "bins": bins}


# ---------------------------------------------------------------- decisions
def decisions(probs: np.ndarray, multi_label: bool, thresholds: Optional[Sequence[Optional[float]]]) -> np.ndarray:
    """(N, C) yes/no per class. Multi-label: p >= threshold (0.5 without one). Single-label: the
    predicted class (argmax; with two classes and a threshold on the positive class, p1 >= t)."""
    n, c = probs.shape
    thr = list(thresholds) if thresholds is not None else [None] * c
    if multi_label:
        t = np.array([0.5 if v is None else v for v in thr])
        return probs >= t[None]
    predicted = predicted_class(probs, thr)
    return predicted[:, None] == np.arange(c)[None]


def predicted_class(probs: np.ndarray, thresholds: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """Single-label predicted class: argmax, or for two classes `p1 >= threshold of class 1`."""
    if probs.shape[1] == 2 and thresholds is not None and thresholds[1] is not None:
        return (probs[:, 1] >= thresholds[1]).astype(np.int64)
    return probs.argmax(axis=1)


def one_hot(targets: np.ndarray, n_classes: int, multi_label: bool) -> np.ndarray:
    if multi_label:
        return np.asarray(targets) > 0.5
    return np.asarray(targets, dtype=np.int64)[:, None] == np.arange(n_classes)[None]


# ---------------------------------------------------------------- point estimates
def point_metrics(probs: np.ndarray, labels: np.ndarray, yes: np.ndarray) -> dict:
    """Per class (list per metric) and micro figures for one sample of the split."""
    n_classes = probs.shape[1]
    per: dict[str, list] = {m: [] for m in (*RANK_METRICS, *THRESHOLD_METRICS)}
    for c in range(n_classes):
        per["auroc"].append(auroc(probs[:, c], labels[:, c]))
        per["ap"].append(average_precision(probs[:, c], labels[:, c]))
        for k, v in _from_counts(_counts(yes[:, c], labels[:, c])).items():
            per[k].append(v)
    micro = {"auroc": auroc(probs.ravel(), labels.ravel()), "ap": average_precision(probs.ravel(), labels.ravel()),
             **_from_counts(_counts(yes.ravel(), labels.ravel()))}
    macro = {m: _mean_defined(vals) for m, vals in per.items()}
    return {"per_class": per, "macro": macro, "micro": micro}


def _mean_defined(values: Sequence[Optional[float]]) -> Optional[float]:
    good = [v for v in values if v is not None]
    return float(np.mean(good)) if good else None


# ---------------------------------------------------------------- bootstrap
def bootstrap_groups(patients: Optional[Sequence[str]], n: int) -> tuple[list[np.ndarray], str]:
    """Resampling units: one per patient (all its images) when patient ids exist, else one per image.
    Units keep the order of first appearance, so one image per patient resamples exactly like images."""
    if patients is None:
        return [np.array([i]) for i in range(n)], "image"
    index: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        index.setdefault(str(p), []).append(i)
    return [np.asarray(v) for v in index.values()], "patient"


def bootstrap_samples(groups: list[np.ndarray], n_boot: int, seed: int):
    """Yield index arrays of `n_boot` resamples with replacement of whole units (seeded)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picks = rng.integers(0, len(groups), len(groups))
        yield np.concatenate([groups[g] for g in picks])


def _interval(values: list[Optional[float]], level: float) -> Optional[list[float]]:
    good = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(good) < 2:
        return None
    lo, hi = np.percentile(good, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return [float(lo), float(hi)]


@dataclass
class BootstrapSettings:
    n: int = 1000
    seed: int = 0
    level: float = 0.95


# ---------------------------------------------------------------- full report
def evaluate_probabilities(probs: np.ndarray, targets: np.ndarray, classes: list[str], multi_label: bool,
                           thresholds: Optional[Sequence[Optional[float]]] = None,
                           patients: Optional[Sequence[str]] = None,
                           domains: Optional[np.ndarray] = None, domain_names: Optional[list[str]] = None,
                           bootstrap: Optional[BootstrapSettings] = None,
                           progress: Optional[Callable[[int, int, str], None]] = None) -> dict:
    """Everything `eval_<split>.json` holds for one split (and per domain when there are several)."""
    report = _evaluate_one(probs, targets, classes, multi_label, thresholds, patients, bootstrap, progress, "")
    if domains is not None and domain_names and len(domain_names) > 1:
        report["per_domain"] = {}
        domains = np.asarray(domains)
        for d, name in enumerate(domain_names):
            sel = np.flatnonzero(domains == d)
            if len(sel) == 0:
                continue
            sub_patients = [patients[i] for i in sel] if patients is not None else None
            report["per_domain"][name] = _evaluate_one(
                probs[sel], np.asarray(targets)[sel], classes, multi_label, thresholds, sub_patients, bootstrap,
                progress, f" ({name})", curves=False)
    return report


def _evaluate_one(probs, targets, classes, multi_label, thresholds, patients, bootstrap, progress, tag,
                  curves: bool = True) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    n, n_classes = probs.shape
    labels = one_hot(targets, n_classes, multi_label)
    yes = decisions(probs, multi_label, thresholds)
    point = point_metrics(probs, labels, yes)
    boot = bootstrap or BootstrapSettings(n=0)
    samples: list[dict] = []
    unit = "image"
    if boot.n > 0 and n > 0:
        groups, unit = bootstrap_groups(patients, n)
        for i, idx in enumerate(bootstrap_samples(groups, boot.n, boot.seed)):
            samples.append(point_metrics(probs[idx], labels[idx], yes[idx]))
            if progress is not None and ((i + 1) % 50 == 0 or i + 1 == boot.n):
                progress(i + 1, boot.n, f"bootstrap{tag}")

    def figure(value, pick) -> dict:
        return {"value": value, "ci": _interval([pick(s) for s in samples], boot.level) if samples else None}

    per_class = {}
    for c, name in enumerate(classes):
        entry = {m: figure(point["per_class"][m][c], lambda s, m=m, c=c: s["per_class"][m][c])
                 for m in (*RANK_METRICS, *THRESHOLD_METRICS)}
        entry["positives"] = int(labels[:, c].sum())
        entry["negatives"] = int(n - labels[:, c].sum())
        entry["threshold"] = None if thresholds is None else thresholds[c]
        entry["ece"] = calibration(probs[:, c], labels[:, c])["ece"]
        if curves:
            entry["roc"] = _thin_curve(roc_curve(probs[:, c], labels[:, c]), ("fpr", "tpr"))
            pr = pr_curve(probs[:, c], labels[:, c])
            entry["pr"] = _thin_curve(pr, ("recall", "precision"))
        per_class[name] = entry
    report = {
        "n": int(n),
        "classes": list(classes),
        "multi_label": bool(multi_label),
        "per_class": per_class,
        "macro": {m: figure(point["macro"][m], lambda s, m=m: s["macro"][m]) for m in point["macro"]},
        "micro": {m: figure(point["micro"][m], lambda s, m=m: s["micro"][m]) for m in point["micro"]},
        "bootstrap": {"n": boot.n if samples else 0, "seed": boot.seed, "level": boot.level, "unit": unit},
    }
    if multi_label:
        report["calibration"] = calibration(probs.ravel(), labels.ravel())
    else:
        pred = predicted_class(probs, thresholds)
        truth = np.asarray(targets, dtype=np.int64)
        correct = pred == truth
        acc_samples = [float(correct[idx].mean()) for idx in _replay(patients, n, boot, samples)]
        report["accuracy"] = {"value": float(correct.mean()) if n else None,
                              "ci": _interval(acc_samples, boot.level) if acc_samples else None}
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(cm, (truth, pred), 1)
        report["confusion_matrix"] = cm.tolist()
        report["calibration"] = calibration(probs.max(axis=1), probs.argmax(axis=1) == truth)
    return report


def _replay(patients, n, boot: BootstrapSettings, samples: list) -> list[np.ndarray]:
    """The same resamples again (same seed), for figures computed outside point_metrics."""
    if not samples:
        return []
    groups, _ = bootstrap_groups(patients, n)
    return list(bootstrap_samples(groups, boot.n, boot.seed))


def _thin_curve(curve, names: tuple[str, str]) -> Optional[dict]:
    if curve is None:
        return None
    x, y = curve[0], curve[1]
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return {names[0]: [round(float(v), 5) for v in x], names[1]: [round(float(v), 5) for v in y]}
