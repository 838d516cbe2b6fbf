"""The picker's preset list: built-in and user presets grouped by dataset, budget, task and custom."""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from core.config.presets import PresetInfo

from ..picker_logic import GROUP_TITLES, group_presets, preset_key


class PresetList(OptionList):
    """Group titles are disabled options; each preset's option id is `preset_key(info)`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.presets: dict[str, PresetInfo] = {}

    def label(self, info: PresetInfo, edited: bool = False) -> Text:
        label = Text(f" {info.name}")
        if not info.builtin:
            label.append(" (user)", style="italic")
        if edited:
            label.append(" *", style="bold yellow")  # edits kept for this preset
        return label

    def mark_edited(self, is_edited) -> None:
        """Mark every preset with edits (`is_edited(info)`) with a '*'."""
        for key, info in self.presets.items():
            edited = bool(is_edited(info))
            if getattr(self, "_edited", {}).get(key) != edited:
                self._edited = {**getattr(self, "_edited", {}), key: edited}
                self.replace_option_prompt(key, self.label(info, edited))

    def load(self, presets: list[PresetInfo], select: Optional[str] = None) -> None:
        """Fill the list; highlight `select` (a preset key or name) or the first preset."""
        self.clear_options()
        self.presets = {}
        self._edited: dict[str, bool] = {}
        options: list = []
        for group, infos in group_presets(presets):
            options.append(Option(Text(GROUP_TITLES.get(group, group), style="bold"), disabled=True))
            for info in infos:
                key = preset_key(info)
                self.presets[key] = info
                options.append(Option(self.label(info), id=key))
        self.add_options(options)
        target = None
        if select is not None:
            for key, info in self.presets.items():
                if key == select or info.name == select or str(info.path) == select:
                    target = key
                    if not info.builtin:  # a user preset shadows a built-in of the same name
                        break
        if target is None and self.presets:
            target = next(iter(self.presets))
        if target is not None:
            self.highlighted = self.get_option_index(target)

    @property
    def current(self) -> Optional[PresetInfo]:
        option = self.highlighted_option
        if option is None or option.id is None:
            return None
        return self.presets.get(option.id)
