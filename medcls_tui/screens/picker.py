"""First screen: presets grouped by dataset/budget/task, editable main settings, the tips explained."""
from __future__ import annotations

from typing import Any, Optional

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.worker import get_current_worker

from core.config import field_doc

from .. import engine_import
from ..picker_logic import (
    MAIN_FIELDS,
    TEXT_FIELDS,
    FormModel,
    Resolution,
    dataset_notes,
    display_error,
    explain,
    preset_key,
    resolve_form,
)
from ..widgets.header import MedclsHeader
from ..widgets.preset_list import PresetList
from ..widgets.settings_form import SettingsForm
from ..widgets.tips_panel import TipsPanel, tips_text


def _dataset_names() -> list[str]:
    from core.config.resolve import dataset_names

    return dataset_names()


def _model_names() -> list[str]:
    from core.config import tips

    names = {m for ms in tips.MODELS_BY_BUDGET.values() for m in ms}
    names |= {row["model"] for row in tips.MODELS_BY_TASK.values()}
    names |= {"resnet18", "resnet34", "convnext", "deit"}
    return sorted(names)


class PickerScreen(Screen):
    """Choose a preset, edit its main settings (validated by the engine) and train or save it."""

    BINDINGS = [
        Binding("ctrl+t", "train", "Train", priority=True),
        Binding("ctrl+s", "save_preset", "Save preset", priority=True),
        Binding("ctrl+r", "reset_edits", "Undo", priority=True),
        Binding("a", "advisor", "Advisor"),
        Binding("r", "runs", "Runs"),
        Binding("w", "watch", "Watch"),
        Binding("escape", "focus_presets", "Presets", show=False),
    ]

    class Resolved(Message):
        def __init__(self, generation: int, resolution: Resolution, rows: list, dataset: tuple) -> None:
            super().__init__()
            self.generation = generation
            self.resolution = resolution
            self.rows = rows
            self.dataset = dataset

    def __init__(self) -> None:
        super().__init__()
        self.form = FormModel()
        self.generation = 0
        self.resolution: Optional[Resolution] = None
        self.resolved_generation = -1
        self.rows: list = []
        self.start_failure: Optional[Text] = None
        """Why the last ctrl+t run could not start; shown until the settings change."""

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        with Horizontal(id="picker-body"):
            with Vertical(id="presets-pane", classes="pane"):
                yield PresetList(id="presets")
            with Horizontal(id="picker-right"):
                yield SettingsForm(_dataset_names(), _model_names(), id="settings", classes="pane")
                yield TipsPanel(id="tips", classes="pane")
        yield Static(Text.assemble(("loading", "bold yellow"), ": presets, tips and the training engine..."),
                     id="picker-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#presets-pane").border_title = "Presets"
        self.query_one("#settings").border_title = "Settings"
        self.query_one("#tips").border_title = "Why (tips)"
        self.reload_presets(self.app.initial_preset)
        self.query_one(PresetList).focus()
        self.call_after_refresh(self.app.start_engine_preload)  # after the first screen is on the terminal

    # ------------------------------------------------------------------ presets
    def reload_presets(self, select: Optional[str] = None) -> None:
        presets = self.app.list_presets()
        plist = self.query_one(PresetList)
        plist.load(presets, select)
        current = plist.current
        if current is not None and (self.form.preset is None or preset_key(current) != preset_key(self.form.preset)):
            self.choose(current)

    def choose(self, info) -> None:
        """Show preset `info`: edits of the preset being left are kept, and `info`'s own come back."""
        restored = self.form.choose(info)
        self.query_one(SettingsForm).show(self.form)
        self.request_resolution()
        self.mark_edited()
        if restored:
            self.notify(f"your edits of {info.name} are back: {', '.join(restored)} (ctrl+r resets them)",
                        title="edits kept", timeout=5)

    def mark_edited(self) -> None:
        self.query_one(PresetList).mark_edited(self.form.edited)
        self.refresh_bindings()  # ctrl+r is live only while there are edits

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        plist = self.query_one(PresetList)
        if event.option_list is not plist:
            return
        info = plist.current
        if info is not None and (self.form.preset is None or preset_key(info) != preset_key(self.form.preset)):
            self.choose(info)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list is self.query_one(PresetList):
            self.query_one("#field-dataset").focus()

    # ------------------------------------------------------------------ editing
    def on_settings_form_field_edited(self, event: SettingsForm.FieldEdited) -> None:
        if event.key in TEXT_FIELDS:
            self.form.set_text(event.key, str(event.value))
        else:
            self.form.set_choice(event.key, event.value)
        self.request_resolution()
        self.mark_edited()

    def on_settings_form_field_focused(self, event: SettingsForm.FieldFocused) -> None:
        if self.resolution is not None and self.resolution.error:
            return
        doc = field_doc(event.key).split("\n")[0] if event.key in MAIN_FIELDS else ""
        self.set_status(Text.assemble((f"{event.key}: ", "bold"), doc, ("  (esc: presets)", "dim")))

    def apply_values(self, values: dict[str, Any]) -> list[str]:
        """Values from another screen (advisor): kept until the preset changes. A value the settings
        already resolve to is no edit (the preset is not marked edited); returns the keys changed."""
        current = self.app.current_resolved
        changed = [key for key, value in values.items()
                   if current is None or getattr(current.config, key, None) != value]
        if not changed:
            return []
        for key, value in values.items():  # all of them: accumulation goes with the batch it was chosen for
            self.form.overrides.pop(key, None)
            self.form.extra[key] = value
        self.query_one(SettingsForm).show(self.form)
        self.request_resolution()
        self.mark_edited()
        return changed

    # ------------------------------------------------------------------ resolution (engine, off the UI thread)
    def request_resolution(self) -> None:
        self.generation += 1
        snapshot = FormModel(preset=self.form.preset, overrides=dict(self.form.overrides),
                             extra=dict(self.form.extra))
        self._resolve(self.generation, snapshot, self.app.tips_vram(), self.app.app_flags())

    @work(thread=True, exclusive=True, group="resolve", exit_on_error=False)
    def _resolve(self, generation: int, form: FormModel, vram: Any, app_flags: dict) -> None:
        with engine_import.ENGINE_LOCK:  # never beside the engine's import (engine_import.py)
            resolution = resolve_form(form, vram, flags=app_flags)
            rows: list = []
            dataset: tuple = ("", [])
            if resolution.resolved is not None:
                rows = explain(resolution.resolved, vram)
                dataset = dataset_notes(resolution.resolved.config.dataset)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Resolved(generation, resolution, rows, dataset))

    def on_picker_screen_resolved(self, message: "PickerScreen.Resolved") -> None:
        if message.generation != self.generation:
            return  # an edit came in since: a newer resolution is on its way
        self.resolution = message.resolution
        self.resolved_generation = message.generation
        if self.start_failure is not None:  # the settings changed since the run could not start
            self.app.forget_failed_start()
        self.start_failure = None
        form_widget = self.query_one(SettingsForm)
        tips = self.query_one(TipsPanel)
        res = message.resolution
        if res.resolved is not None:
            self.rows = message.rows
            self.form.remember(res.resolved)
            form_widget.show(self.form, res.resolved)
            form_widget.set_error(None, "")
            title, bullets = message.dataset
            tips.show(tips_text(self.form.preset, self.rows, title, bullets, res.resolved.warnings,
                                bullet="*" if self.app.settings.ascii else "•"))
            self.app.current_resolved = res.resolved
            if res.error:  # valid settings, but the data is not where they say (data_dir & co.)
                message_text = display_error(res.error)
                form_widget.set_error(res.field if res.field in MAIN_FIELDS else None, message_text)
                self.set_status(Text(message_text, style="bold red"))
            else:
                self.show_ready()
        else:
            message_text = display_error(res.error or "")
            key = res.field if res.field in MAIN_FIELDS and not res.internal else None
            form_widget.set_error(key, "" if res.internal else message_text)
            tips.show(tips_text(self.form.preset, [], error=message_text))
            self.set_status(Text(message_text, style="bold magenta" if res.internal else "bold red"))
        if hasattr(self.app.screen, "config_changed") and self.app.screen is not self:
            self.app.screen.config_changed()

    @property
    def is_current(self) -> bool:
        """The latest resolution matches the form as it is now."""
        return self.resolved_generation == self.generation

    def show_ready(self) -> None:
        """The status line once the settings are valid; says so while the engine is still loading."""
        if not self.app.engine_ready.is_set():
            self.set_status(Text.assemble(("loading", "bold yellow"), " torch and timm in the background; "
                                          "ctrl+t trains once they are in"))
        elif self.app.run_active:
            self.set_status(Text.assemble(("run active", "bold yellow"), ": w watches it; ctrl+s saves these "
                                          "settings as a preset"))
        else:
            self.set_status(Text.assemble(("ready", "bold green"), ": ctrl+t trains this config, "
                                          "ctrl+s saves it as a preset"))

    def show_start_failure(self, message: str) -> None:
        """The run could not start: the message in the status line (and under its field when it names one)."""
        from ..picker_logic import error_field

        text = display_error(message.removeprefix("failed: "))
        key = error_field(text)
        if key in MAIN_FIELDS:
            self.query_one(SettingsForm).set_error(key, text)
        self.start_failure = Text.assemble(("could not start: ", "bold red"), text)
        self.set_status(self.start_failure)
        self.notify(text, title="run could not start", severity="error", timeout=8)

    def engine_loaded(self) -> None:
        if self.resolution is not None and self.resolution.trainable:
            self.show_ready()

    def on_screen_resume(self) -> None:
        """Back from another screen: a run may have started or ended meanwhile."""
        if self.start_failure is not None:
            self.set_status(self.start_failure)
        elif self.resolution is not None and self.resolution.trainable and self.is_current:
            self.show_ready()

    def set_status(self, text: Text | str) -> None:
        self.query_one("#picker-status", Static).update(text)

    # ------------------------------------------------------------------ actions
    def action_train(self) -> None:
        if not self.app.engine_ready.is_set():  # resolving now would run beside the import (and wait for it)
            self.notify("the training engine (torch, timm) is still loading: ctrl+t again when the status "
                        "line says ready", title="not yet", severity="warning")
            return
        with engine_import.ENGINE_LOCK:
            resolution = resolve_form(self.form, self.app.tips_vram(), flags=self.app.app_flags())
        if not resolution.trainable:
            message_text = display_error(resolution.error or "")
            self.query_one(SettingsForm).set_error(resolution.field if resolution.field in MAIN_FIELDS else None,
                                                   message_text)
            self.set_status(Text(message_text, style="bold red"))
            self.notify(message_text, title="cannot train", severity="error")
            return
        self.app.start_run(resolution.resolved)

    def action_save_preset(self) -> None:
        from .save_preset import SavePresetScreen

        res = self.resolution
        if res is None or res.resolved is None or not self.is_current:
            self.notify(display_error(res.error) if res is not None and res.error else "settings are still being checked",
                        title="cannot save", severity="error")
            return
        self.app.push_screen(SavePresetScreen(res.resolved, self.form.preset), self._saved)

    def _saved(self, path) -> None:
        if path:
            self.notify(f"saved {path}", title="preset saved")
            self.reload_presets(str(path))

    def action_reset_edits(self) -> None:
        """Back to the preset's own values (and the tips) for the highlighted preset."""
        dropped = self.form.reset()
        if not dropped:
            self.notify("no edits to reset: these are the preset's values")
            return
        self.query_one(PresetList).focus()  # a focused field would keep its typed text
        self.query_one(SettingsForm).show(self.form)
        self.request_resolution()
        self.mark_edited()
        self.notify(f"reset {', '.join(dropped)} to the preset's values", title="edits reset")

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        if action == "watch":
            return self.app.session is not None
        if action == "reset_edits":
            return bool(self.form.overrides or self.form.extra) or None  # shown dimmed until there are edits
        return True

    def action_advisor(self) -> None:
        self.app.show_advisor()

    def action_runs(self) -> None:
        self.app.show_runs()

    def action_watch(self) -> None:
        self.app.show_training()

    def action_focus_presets(self) -> None:
        self.query_one(PresetList).focus()

    def refresh_view(self) -> None:
        """Run updates while the picker is shown: the header's sub-title carries them; the status line
        follows a run starting or ending (never "ready: ctrl+t trains" while one is active)."""
        self.refresh_bindings()
        active = self.app.run_active
        if active != getattr(self, "_run_was_active", None):
            self._run_was_active = active
            if self.start_failure is None and self.resolution is not None and self.resolution.trainable \
                    and self.is_current:
                self.show_ready()
