"""The app's header: Textual's Header without its screen-change race."""
from __future__ import annotations

from textual import events
from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.widget import Widget
from textual.widgets import Header
from textual.widgets._header import HeaderTitle


class MedclsHeader(Header):
    """Header whose title watcher tolerates a HeaderTitle already removed with its screen.

    Textual 8.2.8's Header watches the app's title and sub-title and, on a change, updates its
    HeaderTitle child from a queued callback that only catches NoScreen. A sub-title change (the live
    run's epoch) that lands while the screen is being popped runs that callback after the child is
    gone, and the NoMatches it raises ends the app. Textual calls `_on_mount` once per class in the
    MRO, so this handler stops the chain (`prevent_default`) and registers the same watchers itself.
    """

    def _on_mount(self, event: events.Mount) -> None:
        event.prevent_default()
        Widget._on_mount(self, event)  # the one base handler the chain would otherwise skip

        async def set_title() -> None:
            try:
                self.query_one(HeaderTitle).update(self.format_title())
            except (NoScreen, NoMatches):
                pass  # the screen is going away: nothing left to title

        self.watch(self.app, "title", set_title)
        self.watch(self.app, "sub_title", set_title)
        self.watch(self.screen, "title", set_title)
        self.watch(self.screen, "sub_title", set_title)
