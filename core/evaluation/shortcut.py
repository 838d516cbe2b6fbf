"""Did the model learn the finding, or the source? (Zech et al. 2018; DeGrave et al. 2021)

Three figures, on any split of data that has sources (the `domain` column, COVIDx sources, the
phantoms' scanners):

- the association of source and label (Cramér's V and the table of counts);
- a source-only baseline: per class, score = P(class | source) from the training split, scored on
  the split like the model (AUROC and accuracy, the same bootstrap);
- the model's AUROC within each source that holds both labels of a class, and their pooled
  (stratified: concordant pairs within sources over all within-source pairs) value.

A warning is raised only when sources carry the label (V at least `min_association`) and either
the model barely beats the source-only guess or its within-source AUROC is far below its overall.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.evaluation.metrics import BootstrapSettings, evaluate_probabilities, one_hot, weighted_rank_metrics


MAX_P = 0.01
"""The association must also be unlikely under independence (permutation test), so a test split of
a dozen images with a chance imbalance does not raise the warning."""


@dataclass(frozen=True)
class ShortcutSettings:
    min_association: float = 0.3
    margin: float = 0.05
    gap: float = 0.10

    @classmethod
    def from_config(cls, cfg) -> "ShortcutSettings":
        return cls(cfg.shortcut_min_association, cfg.shortcut_margin, cfg.shortcut_gap)


def label_codes(targets: np.ndarray, multi_label: bool) -> np.ndarray:
    """One label per image for the association: the class (single-label) or the finding pattern's
    first finding + 1 (multi-label; 0 = none)."""
    targets = np.asarray(targets)
    if not multi_label:
        return targets.astype(np.int64)
    known = np.nan_to_num(targets.astype(np.float64)) > 0.5
    return np.where(known.any(1), known.argmax(1) + 1, 0)


def cramers_v(domains: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Cramér's V of two categorical columns (0 independent, 1 one determines the other), with
    Bergsma's (2013) small-sample correction so a test split of a few dozen images does not show an
    association that is only chance; None when either column has a single value."""
    _, d = np.unique(domains, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    k, r = d.max(initial=-1) + 1, y.max(initial=-1) + 1
    if k < 2 or r < 2:
        return None
    table = np.zeros((k, r))
    np.add.at(table, (d, y), 1)
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    phi2 = float(((table - expected) ** 2 / expected).sum()) / n
    if n <= 1:
        return None
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    k_eff, r_eff = k - (k - 1) ** 2 / (n - 1), r - (r - 1) ** 2 / (n - 1)
    denominator = min(k_eff - 1, r_eff - 1)
    return float(np.sqrt(phi2 / denominator)) if denominator > 0 else None


def association_p_value(domains: np.ndarray, labels: np.ndarray, n_perm: int = 500, seed: int = 0) -> Optional[float]:
    """Permutation p-value of the source-label association (chi-square statistic, labels shuffled):
    how often independent columns look at least this associated on a split of this size."""
    _, d = np.unique(domains, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    k, r = d.max(initial=-1) + 1, y.max(initial=-1) + 1
    if k < 2 or r < 2:
        return None

    def chi2(labels_: np.ndarray) -> float:
        table = np.zeros((k, r))
        np.add.at(table, (d, labels_), 1)
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        return float(((table - expected) ** 2 / expected).sum())

    observed = chi2(y)
    rng = np.random.default_rng(seed)
    hits = sum(chi2(rng.permutation(y)) >= observed - 1e-12 for _ in range(n_perm))
    return (hits + 1) / (n_perm + 1)


def count_table(domains: np.ndarray, targets: np.ndarray, domain_names: list[str], classes: list[str],
                multi_label: bool) -> dict[str, dict[str, int]]:
    """Images per source and class (positives per finding for multi-label)."""
    labels = one_hot(np.asarray(targets), len(classes), multi_label)
    return {name: {c: int(labels[domains == d, i].sum()) for i, c in enumerate(classes)}
            for d, name in enumerate(domain_names) if (domains == d).any()}


def source_only_probabilities(train_domains: np.ndarray, train_targets: np.ndarray, domains: np.ndarray,
                              n_classes: int, multi_label: bool) -> np.ndarray:
    """P(class | source) estimated on the training split (add-one smoothed; a source unseen in
    training gets the overall rate), for every image of the split being scored."""
    train_labels = one_hot(np.asarray(train_targets), n_classes, multi_label).astype(np.float64)
    prior = (train_labels.sum(0) + 1) / (len(train_labels) + (2 if multi_label else n_classes))
    probs = np.tile(prior, (len(domains), 1))
    for d in np.unique(domains):
        seen = train_domains == d
        if seen.any():
            counts = train_labels[seen].sum(0)
            probs[domains == d] = (counts + 1) / (seen.sum() + (2 if multi_label else n_classes))
    return probs if multi_label else probs / probs.sum(1, keepdims=True)


def within_source_auroc(probs: np.ndarray, labels: np.ndarray, domains: np.ndarray,
                        domain_names: list[str]) -> dict:
    """Per class: AUROC inside each source holding both labels, and the pooled (pair-weighted) value."""
    out = {}
    for c in range(labels.shape[1]):
        per_source, concordant, pairs = {}, 0.0, 0.0
        for d, name in enumerate(domain_names):
            sel = domains == d
            y = labels[sel, c]
            pos, neg = int(y.sum()), int(len(y) - y.sum())
            if pos == 0 or neg == 0:
                continue
            auc = float(weighted_rank_metrics(probs[sel, c], y, np.ones((1, len(y))))[0][0])
            per_source[name] = auc
            concordant += auc * pos * neg
            pairs += pos * neg
        out[c] = {"per_source": per_source, "pooled": concordant / pairs if pairs else None}
    return out


def analyse(probs: np.ndarray, table, bundle, bootstrap: BootstrapSettings, model_report: dict,
            settings: ShortcutSettings = ShortcutSettings()) -> Optional[dict]:
    """The shortcut section of an eval report, or None when the data has no sources to compare."""
    if len(bundle.domain_names) < 2 or len(np.unique(table.domains)) < 2:
        return None
    classes, multi_label = list(bundle.classes), bundle.multi_label
    targets, domains = np.asarray(table.targets), np.asarray(table.domains)
    codes = label_codes(targets, multi_label)
    association = cramers_v(domains, codes)
    p_value = association_p_value(domains, codes)
    base_probs = source_only_probabilities(np.asarray(bundle.train.domains), np.asarray(bundle.train.targets),
                                           domains, len(classes), multi_label)
    base = evaluate_probabilities(base_probs, targets, classes, multi_label, patients=table.patients,
                                  bootstrap=bootstrap)
    labels = one_hot(targets, len(classes), multi_label)
    within = within_source_auroc(np.asarray(probs, dtype=np.float64), labels, domains, bundle.domain_names)
    per_class = {}
    for c, name in enumerate(classes):
        per_class[name] = {"model_auroc": model_report["per_class"][name]["auroc"]["value"],
                           "baseline_auroc": base["per_class"][name]["auroc"],
                           "within_source": within[c]["per_source"], "within_pooled": within[c]["pooled"]}
    pooled = [v["within_pooled"] for v in per_class.values() if v["within_pooled"] is not None]
    section = {
        "association": {"cramers_v": association, "p_value": p_value,
                        "counts": count_table(domains, targets, bundle.domain_names, classes, multi_label)},
        "baseline": {"macro_auroc": base["macro"]["auroc"], "accuracy": base.get("accuracy")},
        "per_class": per_class,
        "within_pooled_macro": float(np.mean(pooled)) if pooled else None,
        "model_macro_auroc": model_report["macro"]["auroc"]["value"],
        "settings": vars(settings),
    }
    section["warning"] = warning(section, bundle.domain_names, settings)
    return section


def warning(section: dict, domain_names: list[str], settings: ShortcutSettings) -> Optional[str]:
    """One line naming the sources and the figures and saying what to do, or None."""
    v, p = section["association"]["cramers_v"], section["association"]["p_value"]
    model = section["model_macro_auroc"]
    if v is None or v < settings.min_association or p is None or p >= MAX_P or model is None:
        return None  # sources do not carry the label (or a split this small cannot tell)
    reasons = []
    base = section["baseline"]["macro_auroc"]["value"]
    if base is not None and model - base < settings.margin:
        reasons.append(f"the model's macro AUROC {model:.3f} barely beats a guess from the source alone ({base:.3f})")
    within = section["within_pooled_macro"]
    if within is not None and model - within >= settings.gap:
        reasons.append(f"within a source its AUROC is {within:.3f} against {model:.3f} overall")
    if not reasons:
        return None
    sources = ", ".join(name for name in domain_names if name in section["association"]["counts"])
    return (f"the source predicts the label (Cramér's V {v:.2f} over {sources}) and "
            f"{' and '.join(reasons)}: the score may come from the source, not the finding. Validate on an "
            "unseen source (--holdout_domain NAME), balance the sources' class mix, or train with "
            "--augmentation xdomainmix")


def split_associations(bundle) -> Optional[dict]:
    """`medcls data stats`: for each split a model is scored on (val, test), how much the source says
    about the label: Cramér's V with its permutation p, and the source-only baseline's macro AUROC and
    accuracy (point values; `medcls eval` adds the bootstrap intervals). None without sources."""
    if len(bundle.domain_names) < 2:
        return None
    out = {}
    for split in ("val", "test"):
        table = getattr(bundle, split, None)
        if table is None or len(table) == 0 or len(np.unique(table.domains)) < 2:
            continue
        targets, domains = np.asarray(table.targets), np.asarray(table.domains)
        codes = label_codes(targets, bundle.multi_label)
        probs = source_only_probabilities(np.asarray(bundle.train.domains), np.asarray(bundle.train.targets),
                                          domains, len(bundle.classes), bundle.multi_label)
        base = evaluate_probabilities(probs, targets, list(bundle.classes), bundle.multi_label)
        out[split] = {"cramers_v": cramers_v(domains, codes), "p_value": association_p_value(domains, codes),
                      "source_only_macro_auroc": base["macro"]["auroc"]["value"],
                      "source_only_accuracy": (base.get("accuracy") or {}).get("value")}
    return out or None


def association_lines(associations: Optional[dict]) -> list[str]:
    from core.evaluation.figures_text import fmt

    if not associations:
        return []
    lines = ["source vs label (a classifier that knows only the source, trained on the train split):"]
    for split, a in associations.items():
        lines.append(f"  {split}: Cramér's V {fmt(a['cramers_v'], 2)} (permutation p {fmt(a['p_value'], 3)}), "
                     f"source-only macro AUROC {fmt(a['source_only_macro_auroc'])}"
                     + (f", accuracy {fmt(a['source_only_accuracy'])}" if a["source_only_accuracy"] is not None else ""))
    return lines
