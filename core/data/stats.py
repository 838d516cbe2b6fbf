"""Dataset statistics as a plain dict (for the UI, the CLI and the run folder) plus warnings.

Counts per split, per class (positives per finding for multi-label) and per domain, and the
warnings that matter before training: patients present in several splits (leakage inflates
validation scores) and classes seen in only one domain (a shortcut: the model can learn the
site instead of the disease, the known COVIDx trap).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from core.data.base import DatasetBundle, ImageTable

SPLIT_NAMES = ("train", "val", "test")
EXAMPLES = 3


def _class_counts(targets: np.ndarray, multi_label: bool, num_classes: int) -> np.ndarray:
    targets = np.asarray(targets)
    if len(targets) == 0:
        return np.zeros(num_classes, dtype=np.int64)
    if multi_label:
        return (targets > 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(targets.astype(np.int64), minlength=num_classes)


def _split_stats(bundle: DatasetBundle, table: ImageTable) -> dict[str, Any]:
    counts = _class_counts(table.targets, bundle.multi_label, bundle.num_classes)
    domains = np.bincount(np.asarray(table.domains, dtype=np.int64), minlength=bundle.num_domains)
    patients = {p for p in table.patients if p} if table.patients is not None else set()
    out: dict[str, Any] = {
        "images": int(len(table)),
        "patients": len(patients) if patients else None,
        "per_class": {c: int(n) for c, n in zip(bundle.classes, counts)},
        "per_domain": {d: int(n) for d, n in zip(bundle.domain_names, domains)},
    }
    if bundle.multi_label:
        out["no_finding"] = int((np.asarray(table.targets).sum(axis=1) == 0).sum()) if len(table) else 0
    return out


def _tables(bundle: DatasetBundle) -> dict[str, ImageTable]:
    return {s: getattr(bundle, s) for s in SPLIT_NAMES if getattr(bundle, s, None) is not None}


def compute_stats(bundle: DatasetBundle, max_pos_weight: float = 100.0) -> dict[str, Any]:
    """Everything the UI shows about a dataset; JSON-serialisable."""
    tables = _tables(bundle)
    splits = {name: _split_stats(bundle, t) for name, t in tables.items()}
    total: dict[str, Any] = {
        "images": sum(s["images"] for s in splits.values()),
        "per_class": {c: sum(s["per_class"][c] for s in splits.values()) for c in bundle.classes},
        "per_domain": {d: sum(s["per_domain"][d] for s in splits.values()) for d in bundle.domain_names},
    }
    if bundle.multi_label:
        total["no_finding"] = sum(s["no_finding"] for s in splits.values())
    by_domain = _class_by_domain(bundle, tables)
    stats: dict[str, Any] = {
        "dataset": bundle.name,
        "task": "multi-label" if bundle.multi_label else "single-label",
        "classes": list(bundle.classes),
        "domains": list(bundle.domain_names),
        "splits": splits,
        "total": total,
        "class_by_domain": by_domain,
        "skipped": {"count": len(bundle.skipped), "examples": [list(s) for s in bundle.skipped[:EXAMPLES]]},
        "notes": list(bundle.notes),
        "warnings": _leakage(tables) + _domain_confounds(bundle, by_domain) + _empty_classes(bundle, splits),
    }
    if bundle.multi_label and "train" in splits:
        from core.training.losses import pos_weight_from_counts

        weights = pos_weight_from_counts(bundle.class_counts("train"), len(bundle.train), (1.0, max_pos_weight))
        stats["pos_weight"] = {c: round(float(w), 3) for c, w in zip(bundle.classes, weights.tolist())}
    return stats


def _class_by_domain(bundle: DatasetBundle, tables: dict[str, ImageTable]) -> dict[str, dict[str, int]]:
    out = {d: {c: 0 for c in bundle.classes} for d in bundle.domain_names}
    for table in tables.values():
        domains = np.asarray(table.domains, dtype=np.int64)
        targets = np.asarray(table.targets)
        for k, d in enumerate(bundle.domain_names):
            counts = _class_counts(targets[domains == k], bundle.multi_label, bundle.num_classes)
            for c, n in zip(bundle.classes, counts):
                out[d][c] += int(n)
    return out


def _leakage(tables: dict[str, ImageTable]) -> list[str]:
    sets = {name: {p for p in t.patients if p} for name, t in tables.items() if t.patients is not None}
    warnings = []
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(sets[a] & sets[b])
            if shared:
                warnings.append(f"patient leakage: {len(shared)} patient(s) in both {a} and {b} "
                                f"(e.g. {', '.join(shared[:EXAMPLES])})")
    return warnings


def _domain_confounds(bundle: DatasetBundle, by_domain: dict[str, dict[str, int]]) -> list[str]:
    used = [d for d, counts in by_domain.items() if sum(counts.values()) > 0]
    if len(used) < 2:
        return []
    warnings = []
    for c in bundle.classes:
        present = [d for d in used if by_domain[d][c] > 0]
        if len(present) == 1:
            warnings.append(f"class '{c}' occurs only in domain '{present[0]}' ({by_domain[present[0]][c]} images): "
                            "the model can learn the domain instead of the class")
    return warnings


def _empty_classes(bundle: DatasetBundle, splits: dict[str, dict]) -> list[str]:
    warnings = []
    if "train" in splits:
        warnings += [f"class '{c}' has no training images" for c, n in splits["train"]["per_class"].items() if n == 0]
    if splits.get("val", {}).get("images"):
        warnings += [f"class '{c}' has no validation images: its AUROC is undefined"
                     for c, n in splits["val"]["per_class"].items() if n == 0 and splits["train"]["per_class"].get(c)]
    return warnings


def format_stats(stats: dict[str, Any], max_domains: Optional[int] = 12) -> list[str]:
    """Plain-text lines (a table per view); the CLI prints them, the TUI may too."""
    splits = stats["splits"]
    names = list(splits)
    unit = "positives" if stats["task"] == "multi-label" else "images"
    lines = [f"{stats['dataset']}: {stats['task']}, {len(stats['classes'])} classes, "
             f"{len(stats['domains'])} domain(s), {stats['total']['images']} images"]
    width = max([len("class"), *(len(c) for c in stats["classes"]), *(len(d) for d in stats["domains"])]) + 2
    header = "".ljust(width) + "".join(f"{n:>9}" for n in names) + f"{'total':>9}"
    lines += [header, "images".ljust(width) + "".join(f"{splits[n]['images']:>9}" for n in names)
              + f"{stats['total']['images']:>9}"]
    if any(splits[n]["patients"] for n in names):
        lines.append("patients".ljust(width) + "".join(f"{splits[n]['patients'] or '-':>9}" for n in names))
    lines.append(f"per class ({unit}):")
    for c in stats["classes"]:
        lines.append(f"  {c}".ljust(width) + "".join(f"{splits[n]['per_class'][c]:>9}" for n in names)
                     + f"{stats['total']['per_class'][c]:>9}")
    if stats["task"] == "multi-label":
        lines.append("  (no finding)".ljust(width) + "".join(f"{splits[n].get('no_finding', 0):>9}" for n in names)
                     + f"{stats['total'].get('no_finding', 0):>9}")
    lines.append("per domain:")
    domains = stats["domains"][:max_domains] if max_domains else stats["domains"]
    for d in domains:
        lines.append(f"  {d}".ljust(width) + "".join(f"{splits[n]['per_domain'][d]:>9}" for n in names)
                     + f"{stats['total']['per_domain'][d]:>9}")
    if len(domains) < len(stats["domains"]):
        lines.append(f"  ... {len(stats['domains']) - len(domains)} more domain(s)")
    if "pos_weight" in stats:
        lines.append("pos_weight (train): " + ", ".join(f"{c} {w:g}" for c, w in stats["pos_weight"].items()))
    if stats["skipped"]["count"]:
        lines.append(f"skipped: {stats['skipped']['count']} image(s), e.g. "
                     + "; ".join(f"{f}: {r}" for f, r in stats["skipped"]["examples"]))
    lines += [f"note: {n}" for n in stats["notes"]]
    lines += [f"warning: {w}" for w in stats["warnings"]]
    return lines
