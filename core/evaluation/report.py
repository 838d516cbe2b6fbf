"""A split's evaluation as rows of text (shared by the markdown file, the CLI table and the app),
and the files `eval_<split>.json` / `eval_<split>.md` (+ PNG plots when matplotlib is installed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from core.evaluation.figures_text import PARTIAL_MARK, PARTIAL_NOTE, fmt, fmt_ci  # noqa: F401 - re-exported
from core.evaluation.shortcut_report import shortcut_markdown
from core.runs.folder import write_json_atomic

COLUMNS = ("class", "n+", "AUROC [95% CI]", "AP [95% CI]", "sens", "spec", "PPV", "NPV", "F1", "thr")
PLOTS_HINT = "uv sync --extra plots (or pip install 'medcls[plots]')"


def fmt_interval(figure: Optional[dict], digits: int = 3) -> str:
    """'0.850-0.960' (with PARTIAL_MARK when partial), '-' without an interval."""
    ci = (figure or {}).get("ci")
    if not ci:
        return "-"
    return f"{fmt(ci[0], digits)}-{fmt(ci[1], digits)}" + (PARTIAL_MARK if figure.get("ci_partial") else "")


def has_partial(report: dict) -> bool:
    figures = [*report["per_class"].values(), report["macro"], report["micro"]]
    return any(isinstance(f, dict) and f.get("ci_partial") for e in figures for f in e.values())


DECISION_COLUMNS = ("class", "n+", "sens", "spec", "PPV", "NPV", "F1", "thr")
RANK_COLUMNS = ("class", "AUROC", "95% CI", "AP", "95% CI ")


def decision_rows(report: dict) -> list[list[str]]:
    """The compact first table (fits 80 columns): figures of the decision every tool applies."""
    rows = []
    for name, e in report["per_class"].items():
        rows.append([name, str(e["positives"]), *(fmt(e[m]["value"]) for m in ("sensitivity", "specificity", "ppv",
                                                                                 "npv", "f1")),
                     fmt(e["threshold"]) if e["threshold"] is not None else "-"])
    for label in ("macro", "micro"):
        m = report[label]
        rows.append([label, "", *(fmt(m[k]["value"]) for k in ("sensitivity", "specificity", "ppv", "npv", "f1")),
                     ""])
    return rows


def rank_rows(report: dict) -> list[list[str]]:
    """The second table: AUROC and AP with their intervals, each in its own column."""
    entries = [*report["per_class"].items(), ("macro", report["macro"]), ("micro", report["micro"])]
    return [[name, fmt(e["auroc"]["value"]), fmt_interval(e["auroc"]), fmt(e["ap"]["value"]), fmt_interval(e["ap"])]
            for name, e in entries]


def decision_line(report: dict) -> str:
    """Which rule turned probabilities into the labels scored here (core.evaluation.decision)."""
    from core.evaluation.decision import describe

    classes = report["classes"]
    thresholds = [report["per_class"][c]["threshold"] for c in classes]
    return "decision: " + describe(classes, report["multi_label"], thresholds)["description"]


def table_rows(report: dict, ci_sep: str = " ") -> list[list[str]]:
    """One row per class, then macro and micro means (ci_sep="\n" puts intervals on a second line)."""
    def ci(figure: dict) -> str:
        return fmt_ci(figure, sep=ci_sep)

    rows = []
    for name, e in report["per_class"].items():
        rows.append([name, str(e["positives"]), ci(e["auroc"]), ci(e["ap"]), fmt(e["sensitivity"]["value"]),
                     fmt(e["specificity"]["value"]), fmt(e["ppv"]["value"]), fmt(e["npv"]["value"]),
                     fmt(e["f1"]["value"]), fmt(e["threshold"]) if e["threshold"] is not None else "-"])
    for label in ("macro", "micro"):
        m = report[label]
        rows.append([label, "", ci(m["auroc"]), ci(m["ap"]), fmt(m["sensitivity"]["value"]),
                     fmt(m["specificity"]["value"]), fmt(m["ppv"]["value"]), fmt(m["npv"]["value"]),
                     fmt(m["f1"]["value"]), ""])
    return rows


def headline(report: dict) -> str:
    """One line: n, macro AUROC with CI, accuracy (single-label), ECE, bootstrap unit."""
    parts = [f"n={report['n']}", f"macro AUROC {fmt_ci(report['macro']['auroc'])}"]
    if "accuracy" in report:
        parts.append(f"accuracy {fmt_ci(report['accuracy'])}")
    parts.append(f"ECE {fmt(report['calibration']['ece'])}")
    b = report["bootstrap"]
    if b["n"]:
        unit = b["unit"]
        if b.get("images_without_patient_id"):
            unit += f" ({b['images_without_patient_id']} image(s) without an id each count as a patient)"
        parts.append(f"{b['n']} bootstrap resamples by {unit}")
    return ", ".join(parts)


def summary_figures(report: dict, prefix: str = "test_") -> dict:
    """The flat `test_*` figures summary.json gains at the end of training."""
    out = {f"{prefix}n": report["n"],
           f"{prefix}auroc": report["macro"]["auroc"]["value"], f"{prefix}auroc_ci": report["macro"]["auroc"]["ci"],
           f"{prefix}ap": report["macro"]["ap"]["value"],
           f"{prefix}sensitivity": report["macro"]["sensitivity"]["value"],
           f"{prefix}specificity": report["macro"]["specificity"]["value"],
           f"{prefix}f1": report["macro"]["f1"]["value"], f"{prefix}ece": report["calibration"]["ece"],
           f"{prefix}auroc_per_class": {k: v["auroc"]["value"] for k, v in report["per_class"].items()}}
    if report.get("shortcut"):
        out[f"{prefix}shortcut_warning"] = report["shortcut"]["warning"]
        out[f"{prefix}source_only_auroc"] = report["shortcut"]["baseline"]["macro_auroc"]["value"]
    if "accuracy" in report:
        out[f"{prefix}acc"] = report["accuracy"]["value"]
        out[f"{prefix}acc_ci"] = report["accuracy"]["ci"]
    return out


def markdown(report: dict, split: str, images: dict[str, str], plots_note: str = "") -> str:
    lines = [f"# Evaluation on the {split} split", "",
             f"Run `{report.get('run', '')}`, checkpoint `{report.get('checkpoint', '')}`. {headline(report)}.", ""]
    thr = report.get("thresholds_info") or {}
    if thr:
        lines += [f"Thresholds: {thr.get('method')} chosen on the validation split"
                  + (f" (target sensitivity {thr['target_sensitivity']})" if thr.get("target_sensitivity") else "")
                  + ". Undefined = the split has no positives (or no negatives) for that class.", ""]
    lines += [decision_line(report), ""]
    lines += _md_table(COLUMNS, table_rows(report))
    if has_partial(report):
        lines += ["", PARTIAL_NOTE]
    if "confusion_matrix" in report:
        classes = report["classes"]
        lines += ["", "## Confusion matrix (rows: truth, columns: predicted)", ""]
        lines += _md_table(("", *classes), [[c, *map(str, row)] for c, row in zip(classes, report["confusion_matrix"])])
    lines += ["", "## Calibration", "", f"Expected calibration error: {fmt(report['calibration']['ece'])}", ""]
    lines += _md_table(("bin", "count", "mean confidence", "observed"),
                       [[f"{b['lo']:.1f}-{b['hi']:.1f}", str(b["count"]), fmt(b["confidence"]), fmt(b["observed"])]
                        for b in report["calibration"]["bins"]])
    if report.get("per_domain"):
        lines += ["", "## Per domain", ""]
        rows = [[name, str(d["n"]), fmt_ci(d["macro"]["auroc"]),
                 fmt_ci(d["accuracy"]) if "accuracy" in d else "-", fmt(d["calibration"]["ece"])]
                for name, d in report["per_domain"].items()]
        lines += _md_table(("domain", "n", "macro AUROC [95% CI]", "accuracy", "ECE"), rows)
    lines += shortcut_markdown(report.get("shortcut"))
    lines += ["", "## Plots", ""]
    if images:
        lines += [f"![{title}]({name})" for title, name in images.items()]
    else:
        lines.append(plots_note or "No plots.")
    return "\n".join(lines) + "\n"


def _md_table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def write_report(run_dir: Path, split: str, report: dict, plots: bool = True) -> dict[str, Path]:
    """eval_<split>.json, eval_<split>.md and (with matplotlib) the ROC/PR/reliability PNGs beside them."""
    run_dir = Path(run_dir)
    written = {"json": run_dir / f"eval_{split}.json", "md": run_dir / f"eval_{split}.md"}
    write_json_atomic(written["json"], report)
    images: dict[str, str] = {}
    note = ""
    if plots:
        try:
            from core.evaluation.plots import save_plots
        except ImportError:
            note = f"Plots need matplotlib, an optional extra: {PLOTS_HINT}"
        else:
            for title, path in save_plots(report, run_dir, f"eval_{split}").items():
                images[title] = path.name
                written[title] = path
    else:
        note = "Plots were not requested."
    tmp = written["md"].with_name(f".{written['md'].name}.tmp")
    tmp.write_text(markdown(report, split, images, note), encoding="utf-8")
    tmp.replace(written["md"])
    return written
