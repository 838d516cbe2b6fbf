"""Why the chosen preset's settings are what they are: values, their source and the tip's reason."""
from __future__ import annotations

import io
from typing import Optional

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.config.presets import PresetInfo

from ..picker_logic import ExplainRow, display_value

SOURCE_STYLE = {"tip": "green", "preset": "cyan", "flag": "yellow", "config file": "magenta", "default": "dim"}


def tips_text(preset: Optional[PresetInfo], rows: list[ExplainRow], dataset_title: str = "",
              dataset_tips: Optional[list[str]] = None, warnings: Optional[list[str]] = None,
              error: str = "", bullet: str = "•") -> RenderableType:
    parts: list[RenderableType] = []
    head = Text()
    if preset is not None:
        head.append(preset.name, style="bold")
        if preset.description:
            head.append(f" — {preset.description}")
    if error:
        head.append(("\n" if head.plain else "") + error, style="bold red")
    for warning in warnings or []:  # first, so a wrong setting is seen without scrolling
        head.append(("\n" if head.plain else "") + f"warning: {warning}", style="yellow")
    if head.plain:
        parts.append(head)
    for row in rows:
        line = Text(row.key, style="bold")
        line.append(f" {display_value(row.value) or '-'}", style="not bold")
        line.append(f" [{row.source}]", style=SOURCE_STYLE.get(row.source, ""))
        parts.append(line)
        if row.reason:  # hanging indent: wrapped reason lines stay under the reason
            parts.append(Padding(Text(row.reason, style="dim" if row.source == "default" else ""), (0, 0, 0, 2)))
    tail = Text()
    if dataset_tips:
        tail.append(f"{dataset_title}\n", style="bold")
        for tip in dataset_tips:
            tail.append(f" {bullet} {tip}\n")
    if preset is not None and preset.notes:
        tail.append("Preset notes\n", style="bold")
        tail.append(preset.notes.strip() + "\n", style="italic")
    if tail.plain:
        parts.append(tail)
    return Group(*parts)


def plain_text(renderable: RenderableType, width: int = 120) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


class TipsPanel(VerticalScroll):
    """A scrollable explanation of the resolved config (reasons come from core.config.tips via the engine)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.renderable: RenderableType = Text("loading presets and tips...")

    def compose(self) -> ComposeResult:
        yield Static(self.renderable, id="tips-text")

    def show(self, renderable: RenderableType) -> None:
        self.renderable = renderable
        self.query_one("#tips-text", Static).update(renderable)

    @property
    def plain(self) -> str:
        return plain_text(self.renderable)
