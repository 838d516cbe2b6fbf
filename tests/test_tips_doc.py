"""docs/TIPS.md is generated from core/config/tips.py and must match it (MEDCLS_UPDATE_DOCS=1 rewrites it)."""
from __future__ import annotations

import os
import re

from core.config import tips
from core.config import tips_doc
from core.config.resolve import resolve_config

from conftest import REPO

DOC = REPO / tips_doc.DOC_PATH


def test_tips_doc_is_current():
    text = tips_doc.render()
    if os.environ.get("MEDCLS_UPDATE_DOCS"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, (
        "docs/TIPS.md is out of date with core/config/tips.py: MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tips_doc.py")


def test_every_table_is_in_the_doc_with_its_values():
    text = tips_doc.render()
    for row in tips.BATCH_BY_VRAM:
        assert f"| {row[0]:g} GB |" in text
    for family in tips.LR_TABLE.values():
        assert f"| {family['label']} | `full_finetune` | `{family['full_finetune']}` |" in text
    for steps in tips.MEMORY_STEPS:
        assert steps in text
    for budget, models in tips.MODELS_BY_BUDGET.items():
        assert all(f"`{m}`" in text for m in models), budget
    for name in tips.DATASET_TIPS:
        assert f"| `{name}` |" in text


def test_provenance_cites_sections_of_the_doc_that_exist(tiny_flags):
    """The reasons a run shows point at docs/TIPS.md, and the section they name is in it."""
    sections = set(re.findall(r"^## (.+)$", tips_doc.render(), re.M))
    resolved = resolve_config({**tiny_flags, "model": "vit_small_patch16"}, vram_gib=None)
    cited = [m for m in re.findall(r"\((\S+) ([A-Z][\w -]+)\)", str(resolved.reasons))]
    assert cited, resolved.reasons
    for path, section in cited:
        assert path == "docs/TIPS.md" and section in sections and (REPO / path).is_file()
