"""ROC, precision-recall and reliability plots as PNG. Importing this needs matplotlib (extra `plots`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, works headless
import matplotlib.pyplot as plt  # noqa: E402


def save_plots(report: dict, folder: Path, stem: str) -> dict[str, Path]:
    out = {}
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, e in report["per_class"].items():
        if e.get("roc"):
            ax.plot(e["roc"]["fpr"], e["roc"]["tpr"], label=f"{name} ({e['auroc']['value']:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    _finish(ax, "False positive rate (1 - specificity)", "Sensitivity", "ROC")
    out["ROC curves"] = _save(fig, Path(folder) / f"{stem}_roc.png")

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, e in report["per_class"].items():
        if e.get("pr"):
            ax.step(e["pr"]["recall"], e["pr"]["precision"], where="post", label=name)
    _finish(ax, "Recall (sensitivity)", "Precision (PPV)", "Precision-recall")
    out["Precision-recall curves"] = _save(fig, Path(folder) / f"{stem}_pr.png")

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    bins = [b for b in report["calibration"]["bins"] if b["count"]]
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["observed"] for b in bins], width=0.09, alpha=0.7,
           label="observed")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    _finish(ax, "Predicted probability", "Observed frequency", f"Reliability (ECE {report['calibration']['ece']:.3f})")
    out["Reliability diagram"] = _save(fig, Path(folder) / f"{stem}_reliability.png")
    return out


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right" if "ROC" in title or "Rel" in title else "lower left")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
