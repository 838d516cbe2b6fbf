"""Modal: `s` on the live screen asks before stopping a run (one stray key ended hours of training)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmStopScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n", "answer(False)", "Keep training"),
        Binding("escape", "answer(False)", "Keep training", show=False),
    ]

    def __init__(self, run_name: str = "") -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(id="stop-dialog", classes="dialog"):
            yield Static(f"Stop run {self.run_name}?".replace("  ", " "), classes="dialog-title")
            yield Static("It stops after the current step and saves a checkpoint and the summary; "
                         "e on the Runs screen resumes it later.")
            with Horizontal(id="stop-buttons", classes="dialog-buttons"):
                yield Button("y: stop", id="stop-yes", variant="error", compact=True)
                yield Button("n: keep training", id="stop-no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#stop-dialog").border_title = "Stop?"
        self.query_one("#stop-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop-yes")

    def action_answer(self, confirmed: bool) -> None:
        self.dismiss(confirmed)
