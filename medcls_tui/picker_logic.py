"""Preset picker logic without Textual: grouping, the editable form, resolution, explanations, saving.

Every value and every explanation comes from the engine: `core.config.resolve.resolve_config` (values,
sources, tip reasons, config errors), `core.config.tips` tables (model and mode rows, dataset tips) and
`core.config.presets` (listing and saving). Nothing here decides a training setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from core.config import tips
from core.config import FIELD_NAMES, ConfigError, ResolvedConfig, field_doc
from core.config.presets import PresetInfo, save_preset

MAIN_FIELDS = ("dataset", "data_dir", "model", "mode", "pretrained", "img_size", "epochs", "batch_size", "lr",
               "augmentation", "early_stopping", "mixed_precision")
"""The settings the picker edits (issue 6; img_size since issue 28.11: an NIH run trains at 224 px, which on
a CPU is hours); every other key comes from the preset or the tips."""
TEXT_FIELDS = ("data_dir", "model", "img_size", "epochs", "batch_size", "lr", "early_stopping")
CHOICE_FIELDS = ("dataset", "mode", "augmentation", "pretrained", "mixed_precision")
CHECKBOX_FIELDS = ("pretrained", "mixed_precision")
GROUP_ORDER = ("dataset", "budget", "task", "custom")
GROUP_TITLES = {"dataset": "By dataset", "budget": "By budget", "task": "By task", "custom": "Saved / custom"}
EXPLAIN_KEYS = ("pretrained", "lr", "weight_decay", "batch_size", "grad_accum_steps", "model", "mode", "augmentation", "epochs",
                "warmup_epochs", "early_stopping", "drop_path_rate", "layer_decay", "img_size", "loss", "monitor",
                "mixed_precision")
IDENTITY_KEYS = ("model", "mode", "dataset", "data_dir", "csv", "label_file", "scenario", "synthetic_task",
                 "multi_label", "device")
"""What picks the tips: re-resolving with only these shows what the tips alone would choose."""
NOT_SAVED = ("output_dir", "run_name")
ENGINE_ORIGIN = "command line: "


# ------------------------------------------------------------------ presets
def group_presets(presets: Iterable[PresetInfo]) -> list[tuple[str, list[PresetInfo]]]:
    """[(group, presets)] in picker order; user presets land in their own group (or 'custom')."""
    groups: dict[str, list[PresetInfo]] = {}
    for info in presets:
        group = info.group if info.group in GROUP_ORDER else "custom"
        groups.setdefault(group, []).append(info)
    order = list(GROUP_ORDER) + sorted(set(groups) - set(GROUP_ORDER))
    return [(g, sorted(groups[g], key=lambda i: (not i.builtin, i.name))) for g in order if g in groups]


def preset_key(info: PresetInfo) -> str:
    return f"{'builtin' if info.builtin else 'user'}:{info.path}"


def display_value(value: Any) -> str:
    """A config value as the text a field shows ('' = not set)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ------------------------------------------------------------------ the form
@dataclass
class FormModel:
    """The picker's editable layer: the chosen preset plus the user's edits (as raw text)."""

    preset: Optional[PresetInfo] = None
    overrides: dict = field(default_factory=dict)
    """key -> what the user entered; passed to the engine as flags (it validates and converts)."""
    extra: dict = field(default_factory=dict)
    """Values set from other screens (advisor: batch_size, grad_accum_steps)."""
    auto_values: dict = field(default_factory=dict)
    """Last resolved value of every choice field the user did not override."""
    kept: dict = field(default_factory=dict)
    """preset_key -> (overrides, extra) of presets left with edits: moving to another preset and back
    finds them again instead of throwing them away (issue 16, point 6)."""

    def choose(self, preset: Optional[PresetInfo]) -> list[str]:
        """Switch to `preset`, keeping the current preset's edits and restoring `preset`'s own;
        returns the keys restored (empty when it had none)."""
        if self.preset is not None:
            key = preset_key(self.preset)
            if self.overrides or self.extra:
                self.kept[key] = (dict(self.overrides), dict(self.extra))
            else:
                self.kept.pop(key, None)
        self.preset = preset
        overrides, extra = self.kept.get(preset_key(preset), ({}, {})) if preset is not None else ({}, {})
        self.overrides, self.extra = dict(overrides), dict(extra)
        self.auto_values.clear()
        return sorted({*self.overrides, *self.extra})

    def edited(self, preset: PresetInfo) -> bool:
        """Has `preset` edits (the current one's live edits, another's kept ones)?"""
        if self.preset is not None and preset_key(preset) == preset_key(self.preset):
            return bool(self.overrides or self.extra)
        return preset_key(preset) in self.kept

    def reset(self) -> list[str]:
        """Drop the current preset's edits (its values and the tips come back); returns the keys dropped."""
        dropped = sorted({*self.overrides, *self.extra})
        self.overrides.clear()
        self.extra.clear()
        if self.preset is not None:
            self.kept.pop(preset_key(self.preset), None)
        return dropped

    def preset_value(self, key: str) -> Any:
        if self.preset is None:
            return None
        return self.preset.values.get(key)

    def initial_text(self, key: str) -> str:
        return display_value(self.preset_value(key))

    def set_text(self, key: str, text: str) -> None:
        """A text field changed: blank or the preset's own value means 'not set here'."""
        value = text.strip()
        self.extra.pop(key, None)
        if not value or value == self.initial_text(key):
            self.overrides.pop(key, None)
        else:
            self.overrides[key] = value

    def set_choice(self, key: str, value: Any) -> None:
        """A select/checkbox changed: choosing what preset+tips give anyway is not an override."""
        self.extra.pop(key, None)
        if key in self.auto_values and self.auto_values[key] == value:
            self.overrides.pop(key, None)
        else:
            self.overrides[key] = value

    def text(self, key: str) -> str:
        if key in self.overrides:
            return display_value(self.overrides[key])
        if key in self.extra:
            return display_value(self.extra[key])
        return self.initial_text(key)

    def flags(self) -> dict[str, Any]:
        return {**self.extra, **self.overrides}

    def remember(self, resolved: ResolvedConfig) -> None:
        cfg = resolved.config
        for key in CHOICE_FIELDS:
            if key not in self.overrides:
                self.auto_values[key] = getattr(cfg, key)


@dataclass
class Resolution:
    resolved: Optional[ResolvedConfig]
    error: Optional[str] = None
    """The engine's one-line ConfigError, as the engine words it. With `resolved` set too, the config is
    valid but its data cannot be found (core.data.location_check): values and tips show, training refuses."""
    internal: bool = False
    """`error` is a bug or a broken install (any exception but ConfigError), not the user's settings."""

    @property
    def trainable(self) -> bool:
        return self.resolved is not None and not self.error

    @property
    def field(self) -> Optional[str]:
        return error_field(self.error) if self.error else None


def resolve_form(form: FormModel, vram_gib: Optional[float] | str = "detect",
                 flags: Optional[dict[str, Any]] = None) -> Resolution:
    """The form through the engine's own resolution (preset layer + flags)."""
    from core.config.resolve import resolve_config

    preset = str(form.preset.path) if form.preset is not None else None
    try:
        resolved = resolve_config({**form.flags(), **(flags or {})}, preset=preset, vram_gib=vram_gib)
    except ConfigError as err:
        return Resolution(None, str(err))
    except Exception as err:  # noqa: BLE001 - e.g. a broken install: show it instead of crashing the UI
        log = log_internal_error(err)
        return Resolution(None, f"internal error, not your settings: {type(err).__name__}: "
                                f"{err} (traceback in {log})", internal=True)
    return Resolution(resolved, data_problem(resolved))


def log_internal_error(err: BaseException) -> str:
    """Append err's traceback to the user's medcls log (never to the terminal, which the app owns);
    returns where, for the message."""
    import os
    import time
    import traceback

    path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medcls" / "tui-errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} picker config check\n")
            fh.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    except OSError:
        return "nowhere: the log file could not be written"
    return str(path)


def data_problem(resolved: ResolvedConfig) -> Optional[str]:
    """Where the data should be but is not (the check `medcls train` runs before starting), or None."""
    from core.data.location_check import check_data_location

    try:
        check_data_location(resolved.config)
    except ConfigError as err:
        return str(err)
    return None


def display_error(message: str) -> str:
    """The engine's message for the form: its 'command line: ' origin is the form here."""
    return message[len(ENGINE_ORIGIN):] if message.startswith(ENGINE_ORIGIN) else message


def error_field(message: str) -> Optional[str]:
    """The config key an engine error names ('lr: must be > 0', "preset 'x' (...): epochs: ...")."""
    for part in message.split(": "):
        key = part.strip().split(".")[0]
        if key in FIELD_NAMES:
            return key
        if part.startswith("unknown key '"):
            return part.split("'")[1]
    return None


# ------------------------------------------------------------------ explanations
@dataclass
class ExplainRow:
    key: str
    value: Any
    source: str
    reason: str


def tips_only(resolved: ResolvedConfig, vram_gib: Optional[float] | str = "detect") -> Optional[ResolvedConfig]:
    """What the tips alone pick for the same model/mode/dataset (explains preset and user values)."""
    from core.config.resolve import resolve_config

    cfg = resolved.config
    flags = {k: getattr(cfg, k) for k in IDENTITY_KEYS if getattr(cfg, k) is not None}
    try:
        return resolve_config(flags, vram_gib=vram_gib)
    except Exception:  # noqa: BLE001 - explanations are best effort
        return None


def model_reason(model: str) -> str:
    """Where the spec's Model Selection tables put this model (tips data)."""
    parts = [f"{budget} compute budget ({', '.join(names)})"
             for budget, names in tips.MODELS_BY_BUDGET.items() if model in names]
    for row in tips.MODELS_BY_TASK.values():
        if row["model"] == model:
            mode = f" + {row['mode'].replace('_', ' ')}" if row["mode"] else ""
            parts.append(f"task '{row['label']}': {row['model']}{mode}")
    if parts:
        return "; ".join(parts)
    try:
        from core.models.names import model_family, resolve_model_name

        family = model_family(resolve_model_name(model))
        label = tips.LR_TABLE.get(family, tips.LR_TABLE["cnn"])["label"]
        return f"not in the spec's model tables; treated as {label} for the LR and weight-decay tips"
    except Exception:  # noqa: BLE001
        return ""


def mode_reason(mode: str, lr: Any = None, lr_source: str = "") -> str:
    """The mode's row of the spec, and why the lr row may differ from its typical LR: that figure is the
    mode table's general one, the lr tip is the spec's value for this model family (or set by hand)."""
    row = tips.MODE_TABLE.get(mode)
    if not row:
        return ""
    reason = f"{row['when']}; the mode table's typical LR is {row['typical_lr']}"
    if lr is None:
        return reason
    if lr_source == "tip":
        return reason + f"; lr {display_value(lr)} is the more specific tip for this model family, so it is used"
    origin = {"flag": "your setting", "preset": "the preset", "config file": "the config file"}.get(lr_source,
                                                                                                   "the default")
    return reason + f"; lr {display_value(lr)} is {origin}"


def explain(resolved: ResolvedConfig, vram_gib: Optional[float] | str = "detect",
            alternative: Optional[ResolvedConfig] = None) -> list[ExplainRow]:
    """(key, value, source, reason) for the settings that matter, reasons from the tips.

    A value set by the preset or by hand shows what the tip would be and why.
    """
    alt = alternative if alternative is not None else tips_only(resolved, vram_gib)
    cfg = resolved.config
    rows = []
    for key in EXPLAIN_KEYS:
        value = getattr(cfg, key)
        source = resolved.sources.get(key, "default")
        if key in ("layer_decay", "drop_path_rate") and value is None:
            continue
        if key == "grad_accum_steps" and value == 1 and source == "default":
            continue
        reason = resolved.reasons.get(key, "")
        if key == "model":
            reason = model_reason(str(value))
        elif key == "mode":
            reason = mode_reason(str(value), cfg.lr, resolved.sources.get("lr", "default"))
        elif not reason and alt is not None and key in alt.reasons:
            tip_value = getattr(alt.config, key)
            if tip_value == value:
                reason = f"= tip: {alt.reasons[key]}"
            else:
                reason = f"tip would be {display_value(tip_value)}: {alt.reasons[key]}"
        if key == "mixed_precision" and vram_gib != "detect":
            from core.hardware.advice_table import precision_text

            reason = f"{precision_text(bool(value), vram_gib is not None)}: {field_doc(key).split(chr(10))[0]}"
        if not reason and key == "early_stopping":
            reason = f"spec: stop if no improvement for {tips.EARLY_STOPPING_EXAMPLE} epochs (--early_stopping)"
        if not reason:
            reason = field_doc(key).split("\n")[0]
        rows.append(ExplainRow(key, value, source, reason))
    return rows


def dataset_notes(dataset: str) -> tuple[str, list[str]]:
    ds = tips.dataset_tip(dataset)
    return str(ds.get("title", dataset)), list(ds.get("tips", []))


# ------------------------------------------------------------------ saving
def values_to_save(resolved: ResolvedConfig) -> dict[str, Any]:
    """Keys set by the preset, a config file or by hand (typed by the engine); tips fill the rest."""
    data = resolved.config.model_dump()
    return {k: data[k] for k in FIELD_NAMES
            if resolved.sources.get(k) in ("preset", "config file", "flag") and k not in NOT_SAVED}


def target_path(name: str) -> Optional[Path]:
    """A name saves into the user preset folder; a path ending in .yaml/.yml is used as given."""
    text = name.strip()
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text).expanduser()
    return None


def preset_name(name: str) -> str:
    text = name.strip()
    path = target_path(text)
    return path.stem if path is not None else text


def save_current(resolved: ResolvedConfig, name: str, description: str = "",
                 base: Optional[PresetInfo] = None) -> Path:
    """Write the current settings as a preset YAML (validated by core.config.presets.save_preset)."""
    if not name.strip():
        raise ConfigError("name: give the preset a name (or a path ending in .yaml)")
    notes = "Saved from the medcls app"
    if base is not None:
        notes += f", based on preset '{base.name}'"
        if base.notes.strip():
            notes += f". {' '.join(base.notes.split()).rstrip('.')}"  # its own full stop, not "working.."
    notes += ". Keys not listed here come from the tips for this model, mode, dataset and GPU."
    return save_preset(values_to_save(resolved), path=target_path(name), name=preset_name(name),
                       description=description.strip(), notes=notes, group="custom")
