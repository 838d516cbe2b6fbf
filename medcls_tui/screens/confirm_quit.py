"""Modal: quitting while a run is active stops it gracefully first."""
from __future__ import annotations

from textual.binding import Binding

from .confirm import ConfirmRunScreen


class ConfirmQuitScreen(ConfirmRunScreen):
    BINDINGS = [
        Binding("y", "answer(True)", "Stop and quit"),
        Binding("n", "answer(False)", "Keep training"),
        Binding("escape", "answer(False)", "Keep training", show=False),
    ]
    PREFIX, BORDER_TITLE, YES_LABEL = "quit", "Quit?", "stop and quit"

    def title_text(self) -> str:
        return f"Run {self.run_name or ''} is still training."

    def body_text(self) -> str:
        return ("Quit stops it after the current step, saves a checkpoint and the summary "
                "(resume later from the Runs screen), then exits.")
