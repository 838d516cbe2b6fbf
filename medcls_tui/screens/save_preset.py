"""Modal: save the current settings as a preset YAML (user preset folder, or a .yaml path)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from core.config import ConfigError
from core.config.presets import user_preset_dir

from ..picker_logic import save_current, values_to_save


def home_short(path: Path) -> str:
    """~/... for paths under the home folder: shorter on an 80-column screen, and the same on every machine."""
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


class SavePresetScreen(ModalScreen[Optional[Path]]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, resolved: Any, base: Any = None) -> None:
        super().__init__()
        self.resolved = resolved
        self.base = base

    def compose(self) -> ComposeResult:
        default = f"{self.base.name}_custom" if self.base is not None else "my_preset"
        keys = ", ".join(values_to_save(self.resolved)) or "(none: tips only)"
        with Vertical(id="save-dialog", classes="dialog"):
            yield Static("Save settings as a preset", classes="dialog-title")
            yield Label("name (saved in the user preset folder) or a path ending in .yaml")
            yield Input(value=default, id="preset-name", compact=True)
            yield Label("description")
            yield Input(value=self.base.description if self.base is not None else "", id="preset-description",
                        compact=True)
            yield Static(f"keys saved: {keys}", id="save-keys", classes="dim")
            folder = "the user preset folder" if self.app.settings.stable else home_short(user_preset_dir())
            yield Static(f"folder: {folder}", id="save-folder", classes="dim")
            yield Static("", id="save-error", classes="field-error -shown")
            yield Static("enter / ctrl+s: save    esc: cancel", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#save-dialog").border_title = "Save preset"
        self.query_one("#preset-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        name = self.query_one("#preset-name", Input).value
        description = self.query_one("#preset-description", Input).value
        try:
            path = save_current(self.resolved, name, description, self.base)
        except (ConfigError, OSError) as err:
            self.query_one("#save-error", Static).update(str(err))
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
