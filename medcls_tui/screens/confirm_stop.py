"""Modal: `s` on the live screen asks before stopping a run (one stray key ended hours of training)."""
from __future__ import annotations

from textual.binding import Binding

from .confirm import ConfirmRunScreen


class ConfirmStopScreen(ConfirmRunScreen):
    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n", "answer(False)", "Keep training"),
        Binding("escape", "answer(False)", "Keep training", show=False),
    ]
    PREFIX, BORDER_TITLE, YES_LABEL = "stop", "Stop?", "stop"

    def title_text(self) -> str:
        return f"Stop run {self.run_name}?"

    def body_text(self) -> str:
        return ("It stops after the current step and saves a checkpoint and the summary; "
                "e on the Runs screen resumes it later.")
