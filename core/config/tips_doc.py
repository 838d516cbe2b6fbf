"""docs/TIPS.md, generated from core/config/tips.py: every table of the tips with each value's reason.

The provenance lines the app shows (`--print-config`, the picker's Why panel) cite sections of
this document, so the repository carries what it cites. `python -m core.config.tips_doc` prints it;
tests/test_tips_doc.py checks the committed file is current (MEDCLS_UPDATE_DOCS=1 rewrites it).
"""
from __future__ import annotations

from core.config import tips

DOC_PATH = "docs/TIPS.md"
LEARNING_RATE = "Learning Rate"
"""Section titles other modules cite (tips.lr_tip's reason names this one)."""

FAMILIES = {"cnn": "resnet50", "vit": "vit_small_patch16_224", "swin": "swin_base_patch4_window7_224",
            "convnext": "convnext_tiny"}
"""One example timm model per family, for the rows that depend on the model."""
MODES = ("linear_probe", "full_finetune")
SIZE_EXAMPLES = {"small": "vit_small_patch16_224", "medium": "vit_base_patch16_224", "large": "vit_large_patch16_224"}


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _fmt(value: object) -> str:
    return f"`{value}`" if value is not None else "-"


def _section(title: str, intro: str, body: list[str]) -> list[str]:
    return [f"## {title}", "", intro, "", *body]


def render() -> str:
    """The whole document (deterministic: same tips -> same bytes)."""
    out = ["# Training tips", "",
           "Generated from `core/config/tips.py` by `core/config/tips_doc.py` (do not edit by hand: "
           "`MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tips_doc.py` rewrites it). These are the "
           "values `medcls` fills in when you leave a setting unset; `medcls train --print-config` "
           "shows which ones a run took and cites the section here.", ""]

    out += _section("Linear probe vs full fine-tune", "When to use each mode and its optimizer.", _table(
        ["mode", "when", "typical LR", "optimizer"],
        [[f"`{m}`", r["when"], r["typical_lr"], _fmt(r["optimizer"])] for m, r in tips.MODE_TABLE.items()]))

    rows = []
    for family, model in FAMILIES.items():
        for mode in MODES:
            tip = tips.lr_tip(family, mode)
            rows.append([tips.LR_TABLE[family]["label"], f"`{mode}`", _fmt(tip.value), tip.reason])
    out += _section(LEARNING_RATE, "By model family and mode.", _table(["family", "mode", "lr", "reason"], rows))

    rows = []
    for family in FAMILIES:
        for mode in MODES:
            tip = tips.weight_decay_tip(family, mode)
            rows.append([tips.LR_TABLE[family]["label"], f"`{mode}`", _fmt(tip.value), tip.reason])
    out += _section("Weight decay", "By model family and mode.", _table(["family", "mode", "weight_decay", "reason"], rows))

    rows = []
    for family in FAMILIES:
        for mode in MODES:
            tip = tips.layer_decay_tip(family, mode)
            rows.append([tips.LR_TABLE[family]["label"], f"`{mode}`", _fmt(tip.value if tip else None),
                         tip.reason if tip else "not applied (no layer-wise decay for this family / mode)"])
    out += _section("Layer-wise LR decay", "Transformers: earlier layers get a smaller LR.",
                    _table(["family", "mode", "layer_decay", "reason"], rows))

    rows = []
    for size, model in SIZE_EXAMPLES.items():
        tip = tips.drop_path_tip(model, "full_finetune")
        rows.append([size, f"`{model}`", _fmt(tip.value), tip.reason])
    tip = tips.drop_path_tip(SIZE_EXAMPLES["small"], "linear_probe")
    rows.append(["any (linear probe)", "-", _fmt(tip.value), tip.reason])
    out += _section("Drop path", "By model size (read from the timm name).",
                    _table(["size", "example", "drop_path_rate", "reason"], rows))

    rows = []
    for vram in [None, *[r[0] for r in tips.BATCH_BY_VRAM], 6.0]:
        for model in (SIZE_EXAMPLES["small"], SIZE_EXAMPLES["medium"]):
            tip = tips.batch_tip(vram, "full_finetune", model, "synthetic")
            rows.append(["no GPU" if vram is None else f"{vram:g} GB", f"`{model}`", _fmt(tip.value), tip.reason])
    tip = tips.batch_tip(24.0, "linear_probe", SIZE_EXAMPLES["small"], "synthetic")
    rows.append(["any (linear probe)", "-", _fmt(tip.value), tip.reason])
    out += _section("Batch size", "By GPU memory (fine-tune unless noted).",
                    _table(["GPU memory", "model", "batch_size", "reason"], rows))

    rows = []
    for scenario in tips.AUGMENTATION_BY_SCENARIO:
        for mode in MODES:
            tip = tips.augmentation_tip(scenario, mode)
            rows.append([f"`{scenario}`", f"`{mode}`", _fmt(tip.value), tip.reason])
    out += _section("Data augmentation", "By training scenario (`--scenario`); Mixup example: "
                    + ", ".join(f"`--{k} {v}`" for k, v in tips.MIXUP_EXAMPLE.items()) + ".",
                    _table(["scenario", "mode", "augmentation", "reason"], rows))

    rows = []
    for name, ds in tips.DATASET_TIPS.items():
        values = ", ".join(f"{k} `{v}`" for k, v in ds.items() if k not in ("title", "tips"))
        rows.append([f"`{name}`", ds["title"], values, "; ".join(ds["tips"])])
    rows.append(["other", "any other data set", ", ".join(f"{k} `{v}`" for k, v in tips.GENERIC_DATASET_TIP.items()), ""])
    out += _section("Dataset tips", "Defaults per `--dataset`.", _table(["dataset", "title", "values", "tips"], rows))

    rows = []
    for dataset, multi in (("nih", True), ("csv", True), ("covidx", False)):
        tip = tips.loss_tip(dataset, multi)
        rows.append([f"`{dataset}`", "multi-label" if multi else "single-label", _fmt(tip.value), tip.reason])
    out += _section("Loss", "By task.", _table(["dataset", "task", "loss", "reason"], rows))

    rows = [[r["phase"], r["epochs"], r["description"]] for r in tips.SCHEDULE_TABLE]
    warm = [[f"`{e}`", _fmt(tips.warmup_tip(e).value), tips.warmup_tip(e).reason] for e in (10, 50, 100, 300)]
    out += _section("Training schedule", f"For 100 epochs; early stopping example: `--early_stopping "
                    f"{tips.EARLY_STOPPING_EXAMPLE}`; label smoothing example: `--label_smoothing "
                    f"{tips.LABEL_SMOOTHING_EXAMPLE}`.", _table(["phase", "epochs", "what happens"], rows)
                    + _table(["epochs", "warmup_epochs", "reason"], warm))

    out += _section("Memory optimization", "If running out of memory, in this order:",
                    [f"{i}. {step}" for i, step in enumerate(tips.MEMORY_STEPS, 1)] + [""])

    rows = [[kind, "; ".join(m["signs"]), m["solution"] or "-"] for kind, m in tips.MONITORING.items()]
    out += _section("Monitoring", "What the live view warns about.", _table(["state", "signs", "what to do"], rows))

    rows = [[budget, ", ".join(f"`{m}`" for m in models)] for budget, models in tips.MODELS_BY_BUDGET.items()]
    rows2 = [[t["label"], f"`{t['model']}`", _fmt(t["mode"])] for t in tips.MODELS_BY_TASK.values()]
    out += _section("Model selection", "By compute budget and by task.",
                    _table(["budget", "models"], rows) + _table(["task", "model", "mode"], rows2))
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
