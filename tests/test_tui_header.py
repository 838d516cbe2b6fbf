"""The header survives a title change that lands while its screen is being torn down (CI hit this)."""
from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.css.query import NoMatches
from textual.widgets import Header
from textual.widgets._header import HeaderTitle

from medcls_tui.widgets.header import MedclsHeader


def header_app(header_type: type[Header]) -> App:
    class OneHeader(App):
        def compose(self) -> ComposeResult:
            yield header_type()

    return OneHeader()


async def retitle_after_the_title_is_gone(app: App) -> None:
    """What a screen pop does in two steps: the HeaderTitle child goes first, then a sub-title change
    (the live run's epoch) queues the header's title callback, which runs on the next message turn."""
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.query_one(Header)
        await header.query_one(HeaderTitle).remove()
        app.sub_title = "epoch 2/5"
        await pilot.pause()
        assert app.is_running


async def test_medcls_header_ignores_a_title_change_after_its_title_is_gone():
    app = header_app(MedclsHeader)
    await retitle_after_the_title_is_gone(app)
    assert app.return_code in (0, None)


async def test_medcls_header_still_follows_the_title():
    app = header_app(MedclsHeader)
    async with app.run_test(size=(80, 24)) as pilot:
        app.title, app.sub_title = "medcls", "epoch 3/5"
        await pilot.pause()
        text = str(app.query_one(HeaderTitle).render())
    assert "medcls" in text and "epoch 3/5" in text


async def test_textual_header_has_the_race_this_works_around():
    """If Textual fixes its Header this fails, and MedclsHeader can go."""
    with pytest.raises(NoMatches):
        await retitle_after_the_title_is_gone(header_app(Header))


def test_every_screen_composes_the_medcls_header():
    """One screen back on Textual's Header would bring the race back."""
    from pathlib import Path

    import medcls_tui.screens

    screens = Path(medcls_tui.screens.__file__).parent
    composing = [p.name for p in screens.glob("*.py") if "Header()" in p.read_text(encoding="utf-8")]
    plain = [p.name for p in screens.glob("*.py") if "yield Header(" in p.read_text(encoding="utf-8")]
    assert len(composing) >= 5 and plain == []
