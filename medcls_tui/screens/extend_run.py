"""Modal: extend a finished run by N epochs (the app's face of `medcls train --retrain RUN --epochs N`)."""
from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..run_state import count


class ExtendRunScreen(ModalScreen[Optional[int]]):
    """Asks for how many more epochs; dismisses with that number (None = cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, epochs_done: int, default_more: int = 10) -> None:
        super().__init__()
        self.run_name, self.epochs_done, self.default_more = run_name, epochs_done, default_more

    def compose(self) -> ComposeResult:
        with Vertical(id="extend-dialog", classes="dialog"):
            # Statics wrap inside the dialog (a Label is cut at the border on 80 columns)
            yield Static(f"{self.run_name} finished after {count(self.epochs_done, 'epoch')}", classes="dialog-title")
            yield Static("extend by how many epochs? (the LR schedule is re-planned for the new total)")
            yield Input(value=str(self.default_more), id="extend-epochs", compact=True, type="integer")
            yield Static("", id="extend-error", classes="field-error -shown")
            yield Static("enter: extend and train    esc: cancel", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#extend-dialog").border_title = "Extend run"
        self.query_one("#extend-epochs", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text.isdigit() or int(text) < 1:
            self.query_one("#extend-error", Static).update("epochs: a whole number >= 1")
            return
        self.dismiss(int(text))

    def action_cancel(self) -> None:
        self.dismiss(None)
