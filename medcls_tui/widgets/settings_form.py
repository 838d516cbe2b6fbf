"""The picker's editable main settings, one compact row each, with the engine's error inline."""
from __future__ import annotations

from typing import Any, Optional

from textual.app import ComposeResult
from textual.content import Content
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

from core.config import AUGMENTATIONS, MODES

from ..picker_logic import CHECKBOX_FIELDS, MAIN_FIELDS, TEXT_FIELDS, FormModel, display_value

LABELS = {
    "dataset": "dataset", "data_dir": "data dir", "model": "model", "mode": "mode", "epochs": "epochs",
    "batch_size": "batch size", "lr": "LR", "augmentation": "augmentation", "early_stopping": "early stop",
    "mixed_precision": "mixed precision", "pretrained": "pretrained", "img_size": "image size",
}
CHECKBOX_TEXT = {"pretrained": "timm ImageNet weights", "mixed_precision": "bf16/fp16 on GPU"}


class StateCheckbox(Checkbox):
    """A checkbox whose state is in its text, `[x]` on and `[ ]` off: Textual draws the same X for both
    (only the colour differs), which reads "on" without colour, in ASCII mode and to a screen reader."""

    @property
    def _button(self) -> Content:
        return Content.styled("[x]" if self.value else "[ ]", self.get_visual_style("toggle--label"))


class SettingsForm(VerticalScroll):
    """Shows a FormModel and reports the user's edits as `FieldEdited` messages."""

    class FieldEdited(Message):
        def __init__(self, key: str, value: Any) -> None:
            super().__init__()
            self.key = key
            self.value = value

    class FieldFocused(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, datasets: list[str], models: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.datasets = datasets
        self.models = models
        self.can_focus = False
        self._shown: dict[str, Any] = {}
        self._armed = False
        """What show() last put in each field: a Changed message carrying it is not a user edit."""

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        for key in MAIN_FIELDS:
            with Horizontal(classes="field-row", id=f"row-{key}"):
                yield Label(LABELS[key], classes="field-label")
                if key == "dataset":
                    yield Select([(d, d) for d in self.datasets], allow_blank=False, compact=True,
                                 id="field-dataset", classes="field")
                elif key == "mode":
                    yield Select([(m, m) for m in MODES], allow_blank=False, compact=True,
                                 id="field-mode", classes="field")
                elif key == "augmentation":
                    yield Select([(a, a) for a in AUGMENTATIONS], allow_blank=False, compact=True,
                                 id="field-augmentation", classes="field")
                elif key in CHECKBOX_FIELDS:
                    yield StateCheckbox(CHECKBOX_TEXT[key], value=True, compact=True, id=f"field-{key}", classes="field")
                else:
                    suggester = SuggestFromList(self.models, case_sensitive=False) if key == "model" else None
                    yield Input(compact=True, id=f"field-{key}", classes="field", suggester=suggester,
                                select_on_focus=False)
            yield Static("", id=f"error-{key}", classes="field-error")

    # ------------------------------------------------------------------ showing
    def show(self, form: FormModel, resolved=None) -> None:
        """Put the form's values into the widgets without reporting them as edits."""
        cfg = resolved.config if resolved is not None else None
        with self.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            for key in TEXT_FIELDS:
                widget = self.query_one(f"#field-{key}", Input)
                text = form.text(key)
                if widget.value != text and not widget.has_focus:
                    widget.value = text
                self._shown[key] = widget.value
                self._placeholder(widget, key, cfg, resolved)
            for key in ("dataset", "mode", "augmentation"):
                widget = self.query_one(f"#field-{key}", Select)
                value = form.overrides.get(key, getattr(cfg, key, None) if cfg else form.preset_value(key))
                if value is not None and value != widget.value:
                    try:
                        widget.value = value
                    except Exception:  # noqa: BLE001 - an invalid typed value stays in the override only
                        pass
                self._shown[key] = widget.value
            for key in CHECKBOX_FIELDS:
                box = self.query_one(f"#field-{key}", Checkbox)
                value = form.overrides.get(key, getattr(cfg, key, None) if cfg else None)
                if value is not None and bool(value) != box.value:
                    box.value = bool(value)
                self._shown[key] = box.value
        self._armed = True

    def _placeholder(self, widget: Input, key: str, cfg, resolved) -> None:
        if cfg is None:
            return
        value = getattr(cfg, key, None)
        source = resolved.sources.get(key, "default")
        text = display_value(value)
        widget.placeholder = f"{text} ({source})" if text else f"not set ({source})"

    def set_error(self, key: Optional[str], message: str) -> None:
        """Show `message` under field `key` (others cleared); key None clears all."""
        for name in MAIN_FIELDS:
            label = self.query_one(f"#error-{name}", Static)
            text = message if name == key else ""
            label.update(text)
            label.set_class(bool(text), "-shown")
            self.query_one(f"#row-{name}").set_class(bool(text), "-invalid")
        if key in MAIN_FIELDS:
            self.query_one(f"#row-{key}").scroll_visible()

    def error_text(self, key: str) -> str:
        return str(self.query_one(f"#error-{key}", Static).render())

    # ------------------------------------------------------------------ edits
    def _key(self, widget) -> Optional[str]:
        wid = widget.id or ""
        return wid.removeprefix("field-") if wid.startswith("field-") else None

    def _edited(self, widget, value: Any) -> None:
        key = self._key(widget)
        if not key or not self._armed:
            return  # the widget's own initial value, before the form was first shown
        if key in self._shown and self._shown[key] == value:
            return  # a late Changed message for a value show() put there
        self._shown[key] = value
        self.post_message(self.FieldEdited(key, value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited(event.input, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self._edited(event.select, event.value)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._edited(event.checkbox, bool(event.value))

    def on_descendant_focus(self, event) -> None:
        key = self._key(event.widget) if hasattr(event, "widget") else None
        if key:
            self.post_message(self.FieldFocused(key))
