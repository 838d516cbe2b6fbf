"""A comparison as text: the lines `medcls compare` prints and compare_<split>.md (one wording)."""
from __future__ import annotations

from core.evaluation.figures_text import fmt


def _ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"


def _p(p) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def comparison_lines(result: dict) -> list[str]:
    images = result["images"]
    lines = [f"{result['split']} split: {images['shared_images']} images scored by every run"
             + ("" if images["all_shared"] else " (only these are compared: "
                + ", ".join(f"{k} has {v}" for k, v in images["images_per_run"].items()) + ")")]
    for comp in result["comparisons"]:
        a, b = ",".join(comp["a"]), ",".join(comp["b"])
        lines += ["", f"{b} vs {a} (difference = B - A; paired bootstrap 95% CI, {comp['bootstrap']['n']} resamples "
                      f"by {comp['bootstrap']['unit']})"]
        lines.append(f"{'class':<16} {'AUROC A':>8} {'AUROC B':>8} {'diff':>7} {'95% CI':>17} {'DeLong p':>9}")
        for name, e in comp["per_class"].items():
            spread = (f"  (seed spread A {fmt(e['spread_a'])}, B {fmt(e['spread_b'])})"
                      if e.get("spread_a") is not None or e.get("spread_b") is not None else "")
            lines.append(f"{name[:16]:<16} {fmt(e['auroc_a']):>8} {fmt(e['auroc_b']):>8} {e['difference']:>+7.3f} "
                         f"{_ci(e['ci']):>17} {_p(e.get('delong_p')):>9}{spread}")
        m = comp["macro"]
        lines.append(f"{'macro':<16} {'':>8} {'':>8} {m['difference']:>+7.3f} {_ci(m['ci']):>17}")
        ops = comp["operating"]
        lines.append(f"accuracy at each run's thresholds: A {fmt(ops['accuracy_a'])}, B {fmt(ops['accuracy_b'])}"
                     + (f" (McNemar p {_p(ops['mcnemar_p'])})" if "mcnemar_p" in ops else ""))
        sens = ", ".join(f"{k} {v:+.3f}" for k, v in ops["sensitivity_difference"].items() if v is not None)
        spec = ", ".join(f"{k} {v:+.3f}" for k, v in ops["specificity_difference"].items() if v is not None)
        lines.append(f"sensitivity B - A: {sens or '-'}")
        lines.append(f"specificity B - A: {spec or '-'}")
        ci = m["ci"]
        if ci and ci[0] <= 0 <= ci[1]:
            lines.append("the macro AUROC difference's interval contains 0: on this split the runs are not "
                         "distinguishable")
    diffs = result["config_differences"]
    lines += ["", "config keys that differ: " + ("; ".join(
        f"{k}: " + ", ".join(f"{run}={val}" for run, val in v.items()) for k, v in diffs.items()) or "none")]
    return lines


def comparison_markdown(result: dict) -> str:
    return "# Run comparison\n\n```\n" + "\n".join(comparison_lines(result)) + "\n```\n"
