"""A yes/no modal for actions that end a run's training (stop, quit): one stray key must not do it."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmRunScreen(ModalScreen[bool]):
    """Subclasses set the ids' prefix, the texts and the yes label; n, escape and the focused button keep training."""

    PREFIX = "confirm"
    BORDER_TITLE = "Sure?"
    YES_LABEL = "yes"

    def __init__(self, run_name: str = "") -> None:
        super().__init__()
        self.run_name = run_name

    def title_text(self) -> str:
        raise NotImplementedError

    def body_text(self) -> str:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(id=f"{self.PREFIX}-dialog", classes="dialog"):
            yield Static(self.title_text().replace("  ", " "), classes="dialog-title")
            yield Static(self.body_text())
            with Horizontal(id=f"{self.PREFIX}-buttons", classes="dialog-buttons"):
                yield Button(f"y: {self.YES_LABEL}", id=f"{self.PREFIX}-yes", variant="error", compact=True)
                yield Button("n: keep training", id=f"{self.PREFIX}-no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one(f"#{self.PREFIX}-dialog").border_title = self.BORDER_TITLE
        self.query_one(f"#{self.PREFIX}-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == f"{self.PREFIX}-yes")

    def action_answer(self, confirmed: bool) -> None:
        self.dismiss(confirmed)
