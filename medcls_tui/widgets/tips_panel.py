"""Why the chosen preset's settings are what they are: values, their source and the tip's reason."""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.presets import PresetInfo

from ..picker_logic import ExplainRow, display_value

SOURCE_STYLE = {"tip": "green", "preset": "cyan", "flag": "yellow", "config file": "magenta", "default": "dim"}


def tips_text(preset: Optional[PresetInfo], rows: list[ExplainRow], dataset_title: str = "",
              dataset_tips: Optional[list[str]] = None, warnings: Optional[list[str]] = None,
              error: str = "", bullet: str = "•") -> Text:
    text = Text()
    if preset is not None:
        text.append(preset.name, style="bold")
        if preset.description:
            text.append(f" — {preset.description}")
        text.append("\n")
        if preset.notes:
            text.append(preset.notes.strip() + "\n", style="italic")
    if error:
        text.append(f"\n{error}\n", style="bold red")
    if rows:
        text.append("\nWhy these settings", style="bold underline")
        text.append("  (source in brackets)\n", style="dim")
        width = max(len(r.key) for r in rows)
        for row in rows:
            text.append(f"{row.key:<{width}} ", style="bold")
            text.append(display_value(row.value) or "-")
            text.append(f" [{row.source}]", style=SOURCE_STYLE.get(row.source, ""))
            if row.reason:
                text.append(f" {row.reason}", style="dim" if row.source == "default" else "")
            text.append("\n")
    if dataset_tips:
        text.append(f"\n{dataset_title}\n", style="bold")
        for tip in dataset_tips:
            text.append(f" {bullet} {tip}\n")
    for warning in warnings or []:
        text.append(f"warning: {warning}\n", style="yellow")
    return text


class TipsPanel(VerticalScroll):
    """A scrollable explanation of the resolved config (reasons come from core.tips via the engine)."""

    def compose(self) -> ComposeResult:
        yield Static("loading presets and tips...", id="tips-text")

    def show(self, text: Text) -> None:
        self.query_one("#tips-text", Static).update(text)

    @property
    def plain(self) -> str:
        return str(self.query_one("#tips-text", Static).render())
