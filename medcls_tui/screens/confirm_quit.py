"""Modal: quitting while a run is active stops it gracefully first."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmQuitScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Stop and quit"),
        Binding("n", "answer(False)", "Keep training"),
        Binding("escape", "answer(False)", "Keep training", show=False),
    ]

    def __init__(self, run_name: str = "") -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(f"Run {self.run_name or ''} is still training.".replace("  ", " "), classes="dialog-title")
            yield Static("Quit stops it after the current step, saves a checkpoint and the summary "
                         "(resume later from the Runs screen), then exits.")
            with Horizontal(id="quit-buttons"):
                yield Button("y: stop and quit", id="quit-yes", variant="error", compact=True)
                yield Button("n: keep training", id="quit-no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#quit-dialog").border_title = "Quit?"
        self.query_one("#quit-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")

    def action_answer(self, confirmed: bool) -> None:
        self.dismiss(confirmed)
