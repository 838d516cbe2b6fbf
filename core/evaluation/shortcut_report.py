"""The shortcut section as text: the same lines in eval_<split>.md, `medcls eval` and the app."""
from __future__ import annotations

from typing import Optional

from core.evaluation.figures_text import fmt, fmt_ci


def shortcut_lines(section: Optional[dict]) -> list[str]:
    """Association, source-only baseline and within-source AUROC, then the warning (if any)."""
    if not section:
        return []
    v = section["association"]["cramers_v"]
    base = section["baseline"]
    p = section["association"].get("p_value")
    lines = [f"source vs label: Cramér's V {fmt(v, 2)} (permutation p {fmt(p, 3)}); a source-only guess scores macro AUROC "
             f"{fmt_ci(base['macro_auroc'])}" + (f", accuracy {fmt_ci(base['accuracy'])}" if base.get("accuracy") else "")
             + f"; the model {fmt(section['model_macro_auroc'])}, within sources (pooled) "
             f"{fmt(section['within_pooled_macro'])}"]
    lines.append("warning (shortcut): " + section["warning"] if section.get("warning") else "no sign of a source shortcut")
    return lines


def shortcut_markdown(section: Optional[dict]) -> list[str]:
    if not section:
        return []
    lines = ["", "## Finding or source? (shortcut checks)", "", *shortcut_lines(section), ""]
    rows = [[name, fmt(c["model_auroc"]), fmt(c["baseline_auroc"]["value"]), fmt(c["within_pooled"]),
             ", ".join(f"{s} {fmt(a)}" for s, a in c["within_source"].items()) or "-"]
            for name, c in section["per_class"].items()]
    lines += ["| class | model AUROC | source-only AUROC | within-source (pooled) | per source |",
              "|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows)]
    counts = section["association"]["counts"]
    classes = list(next(iter(counts.values())).keys()) if counts else []
    lines += ["", "| source | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
              *(f"| {s} | " + " | ".join(str(row[c]) for c in classes) + " |" for s, row in counts.items())]
    return lines
