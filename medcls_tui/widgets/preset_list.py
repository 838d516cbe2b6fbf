"""The picker's preset list: built-in and user presets grouped by dataset, budget, task and custom."""
from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from core.presets import PresetInfo

from ..picker_logic import GROUP_TITLES, group_presets, preset_key


class PresetList(OptionList):
    """Group titles are disabled options; each preset's option id is `preset_key(info)`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.presets: dict[str, PresetInfo] = {}

    def load(self, presets: list[PresetInfo], select: Optional[str] = None) -> None:
        """Fill the list; highlight `select` (a preset key or name) or the first preset."""
        self.clear_options()
        self.presets = {}
        options: list = []
        for group, infos in group_presets(presets):
            options.append(Option(Text(GROUP_TITLES.get(group, group), style="bold"), disabled=True))
            for info in infos:
                key = preset_key(info)
                self.presets[key] = info
                label = Text(f" {info.name}")
                if not info.builtin:
                    label.append(" (user)", style="italic")
                options.append(Option(label, id=key))
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
