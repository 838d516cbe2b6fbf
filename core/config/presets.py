"""Find, load and save preset files: built-in `presets/*.yaml` and the user's preset folder."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from core.config.train_config import ConfigError
from core.config.yaml_io import flatten_yaml_config, load_yaml_file

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "presets"


def user_preset_dir() -> Path:
    """$MEDCLS_PRESET_DIR, else ~/.config/medcls/presets (created on first save)."""
    env = os.environ.get("MEDCLS_PRESET_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "medcls" / "presets"


@dataclass
class PresetInfo:
    name: str
    path: Path
    builtin: bool
    description: str = ""
    group: str = "custom"
    """dataset / budget / task / custom: how the picker groups presets."""
    tags: list = field(default_factory=list)
    notes: str = ""
    values: dict = field(default_factory=dict)
    error: str = ""
    """Why a user preset file could not be read (listed as broken; never breaks the others)."""


def _read(path: Path, builtin: bool) -> PresetInfo:
    flat, meta = flatten_yaml_config(load_yaml_file(path), str(path))
    for key in ("name", "description", "notes", "group"):
        if meta.get(key) is not None and not isinstance(meta[key], (str, int, float)):
            raise ConfigError(f"{path}: '{key}' must be text (got {type(meta[key]).__name__})")
    tags = meta.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(t, (str, int, float)) for t in tags):
        raise ConfigError(f"{path}: 'tags' must be a list of words like [cnn, fast] (got {tags!r:.60})")
    return PresetInfo(
        name=str(meta.get("name") or path.stem),
        path=path,
        builtin=builtin,
        description=str(meta.get("description", "")),
        group=str(meta.get("group", "custom")),
        tags=[str(t) for t in tags],
        notes=str(meta.get("notes", "") or "").strip(),
        values=flat,
    )


def list_presets(include_broken: bool = False) -> list[PresetInfo]:
    """Built-in presets first, then user presets (a user preset may shadow a built-in name).

    A user preset that cannot be read is skipped (or, with include_broken, listed with its error),
    so one bad file never hides the others.
    """
    found: list[PresetInfo] = []
    for folder, builtin in ((BUILTIN_DIR, True), (user_preset_dir(), False)):
        try:
            paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
        except OSError:
            paths = []
        for path in paths:
            try:
                found.append(_read(path, builtin))
            except ConfigError as err:
                if builtin:
                    raise
                if include_broken:
                    found.append(PresetInfo(name=path.stem, path=path, builtin=False, group="broken", error=str(err)))
    return found


def find_preset(name_or_path: str) -> PresetInfo:
    """A preset by name (user presets win over built-ins) or by file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"preset: file not found: {p}")
        return _read(p, builtin=False)
    everything = list_presets(include_broken=True)
    matches = [info for info in everything if not info.error and (info.name == name_or_path
                                                                  or info.path.stem == name_or_path)]
    broken = [info for info in everything if info.error and info.path.stem == name_or_path]
    if not matches and broken:
        raise ConfigError(f"preset '{name_or_path}' is broken: {broken[0].error}")
    if not matches:
        names = ", ".join(sorted({i.name for i in list_presets()}))
        raise ConfigError(f"preset: unknown preset '{name_or_path}'. Available: {names} (or a path to a .yaml file)")
    user = [m for m in matches if not m.builtin]
    return user[-1] if user else matches[0]


def save_preset(values: dict[str, Any], path: Optional[Path] = None, name: str = "my_preset",
                description: str = "", notes: str = "", group: str = "custom") -> Path:
    """Write a preset YAML (metadata first, then config keys); returns its path."""
    from core.config.yaml_io import validate_layer

    clean = {k: v for k, v in values.items() if k != "__sections__"}
    validate_layer(clean, f"preset '{name}'")
    target = path or (user_preset_dir() / f"{name}.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"name": name, "group": group}
    if description:
        data["description"] = description
    if notes:
        data["notes"] = notes
    data.update(clean)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(target)
    return target
