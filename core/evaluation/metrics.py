"""Per-class diagnostic metrics on probabilities, with seeded bootstrap CIs (by patient when known).

Pure numpy: the same code scores a split at the end of training, in `medcls eval` and in tests.
A class without positives or without negatives in a split has undefined AUROC/AP/sensitivity or
specificity: reported as None, never 0.5 and never a crash. Macro means average the defined classes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from core.evaluation.decision import decide, predicted_index

CURVE_POINTS = 101
"""ROC/PR curves are stored at most this many points (enough for a plot, small in JSON)."""
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")
RANK_METRICS = ("auroc", "ap")


# ---------------------------------------------------------------- single binary problems
def auroc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (tied scores count one half); None without both classes."""
    return _value(weighted_rank_metrics(scores, labels, np.ones((1, len(labels))))[0][0])


def _operating_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, true positives, false positives) for `score >= threshold` at each distinct score."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = (last_of_group + 1) - tp
    return s[last_of_group], tp, fp


def average_precision(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Step-wise AP = sum over thresholds of (recall gain) x precision. None without positives, and
    None without negatives too: AP is then 1 whatever the model does, so it measures nothing."""
    return _value(weighted_rank_metrics(scores, labels, np.ones((1, len(labels))))[1][0])


def binary_operating_points(scores: np.ndarray, labels: np.ndarray):
    """(thresholds, tp, fp, n_pos, n_neg) of one class, or None when the split lacks positives or
    negatives (the class is undefined there: never scored as 0.5)."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    thr, tp, fp = _operating_points(np.asarray(scores, dtype=np.float64), labels)
    return thr, tp, fp, n_pos, n_neg


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fpr, tpr, thresholds) starting at (0, 0) with threshold +inf; None without both classes."""
    points = binary_operating_points(scores, labels)
    if points is None:
        return None
    thr, tp, fp, n_pos, n_neg = points
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thr]


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(recall, precision) from the highest threshold down; None without positives."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    _, tp, fp = _operating_points(np.asarray(scores, dtype=np.float64), labels)
    return np.r_[0.0, tp / n_pos], np.r_[1.0, tp / (tp + fp)]


def threshold_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Optional[float]]:
    """Sensitivity, specificity, PPV, NPV and F1 of yes/no decisions; None where a denominator is 0."""
    out = weighted_threshold_metrics(predicted, labels, np.ones((1, len(labels))))
    return {k: _value(v[0]) for k, v in out.items()}


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
    """(N, C) yes/no per class for the per-class figures: the labels the tools output (decision.decide),
    so a class's sensitivity is the one of the deployed decision, never a one-vs-rest point no tool applies."""
    return decide(probs, multi_label, thresholds)


def predicted_class(probs: np.ndarray, thresholds: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """Single-label predicted class under the run's decision rule (decision.predicted_index)."""
    return predicted_index(probs, thresholds)


def one_hot(targets: np.ndarray, n_classes: int, multi_label: bool) -> np.ndarray:
    if multi_label:
        return np.asarray(targets) > 0.5
    return np.asarray(targets, dtype=np.int64)[:, None] == np.arange(n_classes)[None]


# ---------------------------------------------------------------- weighted (bootstrap) estimates
BOOT_CHUNK = 64
"""Resamples scored at most at once; memory is chunk x images x classes floats (x a few copies)."""
BOOT_BUDGET = 2_000_000
"""Floats of one chunk's micro weight matrix (16 MB): the NIH test split stays well under 200 MB."""
MIN_RESAMPLE_SHARE = 0.9
"""An interval defined by fewer of the resamples than this share is marked in the report."""


def weighted_rank_metrics(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC, AP) for each row of `weights` (B, N): a bootstrap resample is the original images
    counted with multiplicity, so one sort serves every resample. NaN where undefined."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(scores, dtype=np.float64)[order], np.asarray(labels, dtype=bool)[order]
    w = weights[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)  # groups are in descending score order
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    defined = (n_pos > 0) & (n_neg > 0)
    return np.where(defined, auc, np.nan), np.where(defined, ap, np.nan)


def weighted_threshold_metrics(yes: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV, F1 per row of `weights`; NaN where a denominator is 0."""
    yes, y = np.asarray(yes, dtype=bool), np.asarray(labels, dtype=bool)
    tp, fp = weights @ (yes & y), weights @ (yes & ~y)
    fn, tn = weights @ (~yes & y), weights @ (~yes & ~y)

    def ratio(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn), "f1": np.where(tp + fn > 0, ratio(2 * tp, 2 * tp + fp + fn), np.nan)}


def weighted_metrics(probs: np.ndarray, labels: np.ndarray, yes: np.ndarray, weights: np.ndarray) -> dict:
    """Per class (C, B), macro (B,) and micro (B,) figures for each row of `weights`."""
    n_classes = probs.shape[1]
    per: dict[str, list] = {m: [] for m in (*RANK_METRICS, *THRESHOLD_METRICS)}
    for c in range(n_classes):
        auc, ap = weighted_rank_metrics(probs[:, c], labels[:, c], weights)
        per["auroc"].append(auc)
        per["ap"].append(ap)
        for k, v in weighted_threshold_metrics(yes[:, c], labels[:, c], weights).items():
            per[k].append(v)
    per = {k: np.stack(v) for k, v in per.items()}
    flat_w = np.repeat(weights, n_classes, axis=1)  # probs.ravel() is image-major
    auc, ap = weighted_rank_metrics(probs.ravel(), labels.ravel(), flat_w)
    micro = {"auroc": auc, "ap": ap, **weighted_threshold_metrics(yes.ravel(), labels.ravel(), flat_w)}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: an undefined macro
        macro = {m: np.nanmean(v, axis=0) for m, v in per.items()}
    return {"per_class": per, "macro": macro, "micro": micro}


def _value(x) -> Optional[float]:
    x = float(x)
    return x if np.isfinite(x) else None


# ---------------------------------------------------------------- bootstrap
def _missing_id(p) -> bool:
    return p is None or (isinstance(p, float) and p != p) or str(p).strip() in ("", "None", "nan", "NaN")


def bootstrap_groups(patients: Optional[Sequence[str]], n: int) -> tuple[np.ndarray, int, str]:
    """(unit of each image, number of units, unit name): one unit per patient (all its images) when
    patient ids exist, else per image. An image without an id is a patient of its own (the splitter's
    rule), never pooled with the other unlabelled images into one giant "None" patient. Units are
    numbered in order of first appearance, so one image per patient resamples exactly like images."""
    if patients is None:
        return np.arange(n), n, "image"
    index: dict = {}
    unit = np.array([index.setdefault(("image", i) if _missing_id(p) else str(p), len(index))
                     for i, p in enumerate(patients)], dtype=np.int64)
    return unit, len(index), "patient"


def boot_chunk(n_images: int, n_classes: int) -> int:
    """Resamples scored at once so a chunk's weight matrices stay near BOOT_BUDGET floats whatever the split."""
    return int(max(1, min(BOOT_CHUNK, BOOT_BUDGET // max(1, n_images * max(1, n_classes)))))


def bootstrap_weights(unit: np.ndarray, n_units: int, n_boot: int, seed: int, chunk: int = BOOT_CHUNK):
    """Yield (chunk, N) image multiplicities of `n_boot` seeded resamples of whole units."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        picks = rng.integers(0, n_units, (b, n_units))
        flat = (picks + (np.arange(b) * n_units)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n_units).reshape(b, n_units).astype(np.float64)
        done += b
        yield counts[:, unit]


def _interval(values: np.ndarray, level: float) -> Optional[list[float]]:
    good = np.asarray(values, dtype=np.float64)
    good = good[np.isfinite(good)]
    if len(good) < 2:
        return None
    lo, hi = np.percentile(good, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return [float(lo), float(hi)]


def _defined(values: np.ndarray) -> int:
    """Resamples where the figure is defined (a resample can lose a class's only positive patient)."""
    return int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())


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
    point = weighted_metrics(probs, labels, yes, np.ones((1, n)))
    boot = bootstrap or BootstrapSettings(n=0)
    unit_of, n_units, unit = bootstrap_groups(patients, n)
    chunks: list[dict] = []
    correct = None if multi_label else (predicted_class(probs, thresholds) == np.asarray(targets, dtype=np.int64))
    acc_samples: list[np.ndarray] = []
    if boot.n > 0 and n > 0:
        done = 0
        for w in bootstrap_weights(unit_of, n_units, boot.n, boot.seed, boot_chunk(n, n_classes)):
            chunks.append(weighted_metrics(probs, labels, yes, w))
            if correct is not None:
                acc_samples.append((w @ correct) / w.sum(axis=1))
            done += len(w)
            if progress is not None:
                progress(done, boot.n, f"bootstrap{tag}")

    def gather(pick) -> np.ndarray:
        return np.concatenate([pick(ch) for ch in chunks]) if chunks else np.zeros(0)

    def figure(pick) -> dict:
        if not chunks:
            return {"value": _value(pick(point)[0]), "ci": None}
        samples = gather(pick)
        ci = _interval(samples, boot.level)
        used = _defined(samples)
        return {"value": _value(pick(point)[0]), "ci": ci, "ci_resamples": used,
                "ci_partial": ci is not None and used < MIN_RESAMPLE_SHARE * boot.n}

    per_class = {}
    for c, name in enumerate(classes):
        entry = {m: figure(lambda r, m=m, c=c: r["per_class"][m][c]) for m in (*RANK_METRICS, *THRESHOLD_METRICS)}
        entry["positives"] = int(labels[:, c].sum())
        entry["negatives"] = int(n - labels[:, c].sum())
        # argmax (3+ single-label classes) applies no threshold: never show one that is not applied
        entry["threshold"] = None if thresholds is None or (not multi_label and n_classes > 2) else thresholds[c]
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
        "macro": {m: figure(lambda r, m=m: r["macro"][m]) for m in point["macro"]},
        "micro": {m: figure(lambda r, m=m: r["micro"][m]) for m in point["micro"]},
        "bootstrap": {"n": boot.n if chunks else 0, "seed": boot.seed, "level": boot.level, "unit": unit,
                      "units": int(n_units), "images_without_patient_id":
                          0 if patients is None else int(sum(_missing_id(p) for p in patients))},
    }
    if multi_label:
        report["calibration"] = calibration(probs.ravel(), labels.ravel())
    else:
        pred = predicted_class(probs, thresholds)
        truth = np.asarray(targets, dtype=np.int64)
        report["accuracy"] = {"value": float(correct.mean()) if n else None,
                              "ci": _interval(np.concatenate(acc_samples), boot.level) if acc_samples else None}
        if acc_samples:
            report["accuracy"]["ci_resamples"] = _defined(np.concatenate(acc_samples))
            report["accuracy"]["ci_partial"] = False
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(cm, (truth, pred), 1)
        report["confusion_matrix"] = cm.tolist()
        report["calibration"] = calibration(probs.max(axis=1), probs.argmax(axis=1) == truth)
    return report


def _thin_curve(curve, names: tuple[str, str]) -> Optional[dict]:
    if curve is None:
        return None
    x, y = curve[0], curve[1]
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return {names[0]: [round(float(v), 5) for v in x], names[1]: [round(float(v), 5) for v in y]}
