"""The first screen: drawn as soon as Textual is up, while the picker's modules load in a worker."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static


class LoadingScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Static(" medcls: loading presets and tips... (the training engine, torch and timm, loads in the "
                     "background after this)", id="loading-line")
