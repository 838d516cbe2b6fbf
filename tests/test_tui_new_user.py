"""Issue 28: what a new user still tripped over, each checked through the app (Pilot) or the CLI."""
from __future__ import annotations

import pytest

from test_tui_helpers import make_app, picker_ready, screen_text, wait_for


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if label in line)


@pytest.mark.parametrize("ascii_mode", [False, True])
async def test_checkboxes_say_their_state_in_text(tmp_path, ascii_mode):
    """28.2: `[x]` on, `[ ]` off (Textual drew the same X for both, `[X]` in ASCII mode)."""
    app = make_app(tmp_path / "runs")  # demo: pretrained false; mixed precision on
    app.settings.ascii = ascii_mode
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        text = screen_text(app)
        assert "[ ] timm ImageNet" in _row(text, "pretrained")
        assert "[x] bf16/fp16" in _row(text, "mixed precision")
        picker.query_one("#field-pretrained").focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: "[x] timm ImageNet" in _row(screen_text(app), "pretrained"),
                       what="pretrained checked")
