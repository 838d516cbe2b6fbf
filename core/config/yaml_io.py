"""Reading and writing config YAML: size-checked safe parsing, section flattening and key hints.

Kept apart from TrainConfig so the schema reads on its own; imports only the schema.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from core.config.train_config import (FIELD_NAMES, MODE_SECTIONS, PRESET_META_KEYS, YAML_MAX_BYTES, YAML_MAX_DEPTH,
                                      YAML_MAX_NODES, ConfigError, TrainConfig)


KEY_SYNONYMS = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "batchsize": "batch_size",
                "patience": "early_stopping", "amp": "mixed_precision", "fp16": "mixed_precision",
                "arch": "model", "backbone": "model", "image_size": "img_size", "resolution": "img_size"}
"""Names other trainers use for our keys, for the "did you mean"."""
VALUE_HINTS = {"batch_size": "must be a whole number >= 1 or 'auto' (measured probe)"}
"""Wording for fields whose pydantic error would not say what is allowed (a union of int and 'auto')."""


def unknown_keys_message(keys: list[str], prefix: str = "") -> str:
    """Every unknown key at once, each with its closest real key, then the allowed keys."""
    import difflib

    parts = []
    for key in keys:
        name = str(key).split(".")[-1]
        close = [KEY_SYNONYMS[name.lower()]] if name.lower() in KEY_SYNONYMS else \
            difflib.get_close_matches(name, FIELD_NAMES, n=1, cutoff=0.6)
        parts.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    noun = "key" if len(keys) == 1 else "keys"
    return f"{prefix}unknown {noun} {', '.join(parts)}. Allowed keys: {', '.join(FIELD_NAMES)}"


def _format_validation_error(err: ValidationError, origin: str = "") -> str:
    errors = err.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "config"
    msg = first.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        extra = [".".join(str(p) for p in e.get("loc", ())) for e in errors if e.get("type") == "extra_forbidden"]
        return unknown_keys_message(extra, origin)
    field_name = str(first.get("loc", ("",))[0]) if first.get("loc") else ""
    if field_name in VALUE_HINTS:
        return f"{origin}{field_name}: {VALUE_HINTS[field_name]} (got {first.get('input')!r})"
    if first.get("type") == "literal_error":
        return f"{origin}{loc}: {msg} (got {first.get('input')!r})"
    if loc == "config" or msg.startswith(loc + ":"):
        return f"{origin}{msg}"
    return f"{origin}{loc}: {msg} (got {first.get('input')!r})"


def validate_layer(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """Check one layer's keys exist and values have the right type, naming the origin on error."""
    unknown = [k for k in values if k not in FIELD_NAMES]
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, f"{origin}: "))
    try:
        TrainConfig.model_validate({k: v for k, v in values.items()})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{origin}: ")) from None
    return values


def flatten_yaml_config(data: Any, origin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a preset/config YAML mapping into (flat config values, preset metadata).

    Mode sections (`full_finetune: {layer_decay: 0.65}`) are kept aside under their mode name
    and applied only when that mode is chosen (see `apply_mode_sections`).
    """
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a YAML mapping of config keys, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        key = str(key)
        if key in PRESET_META_KEYS:
            meta[key] = value
        elif key in MODE_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: '{key}' must be a mapping like {{layer_decay: 0.65}}")
            unknown += [f"{key}.{sub}" for sub in value if sub not in FIELD_NAMES]
            flat.setdefault("__sections__", {})[key] = dict(value)
        elif key not in FIELD_NAMES:
            unknown.append(key)
        else:
            flat[key] = value
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, f"{origin}: "))
    return flat, meta


def load_yaml_file(path: str | Path) -> Any:
    """Read YAML safely; any problem (syntax, encoding, size, alias bomb, depth) is one ConfigError
    naming the file (and line where there is one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = p.read_bytes()[:YAML_MAX_BYTES + 1]
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror or err})") from None
    return parse_yaml_text(raw, str(p))


def parse_yaml_text(raw: bytes | str, origin: str) -> Any:
    """safe_load with bounds: UTF-8 text only, at most YAML_MAX_BYTES, YAML_MAX_NODES after alias
    expansion and YAML_MAX_DEPTH levels of nesting."""
    if isinstance(raw, bytes):
        if len(raw) > YAML_MAX_BYTES:
            raise ConfigError(f"{origin}: larger than {YAML_MAX_BYTES // 1000} kB; a config is a short YAML file")
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise ConfigError(f"{origin}: UTF-16 text, not UTF-8; save it as UTF-8")
        if b"\x00" in raw:
            raise ConfigError(f"{origin}: binary file (NUL bytes), not YAML text; save it as UTF-8 YAML")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{origin}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                              "save it as UTF-8") from None
    else:
        text = raw
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_yaml_size(node, origin)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(f"{origin}{where}: invalid YAML ({problem})") from None
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply (more than {YAML_MAX_DEPTH} levels)") from None
    except (ValueError, TypeError, OverflowError) as err:  # e.g. a timestamp out of range
        raise ConfigError(f"{origin}: invalid YAML value ({str(err).splitlines()[0][:120]})") from None


def _check_yaml_size(root: Optional[yaml.Node], origin: str) -> None:
    """Count nodes with aliases expanded (memoised per node, so the count itself is cheap)."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > YAML_MAX_DEPTH:
            raise ConfigError(f"{origin}: nested too deeply (more than {YAML_MAX_DEPTH} levels)")
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if not children_done:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > YAML_MAX_NODES:
            raise ConfigError(f"{origin}: expands to more than {YAML_MAX_NODES} values (YAML aliases "
                              "used as a 'billion laughs'?); refused")
        sizes[id(node)] = total


def dump_config_yaml(config: TrainConfig, extra: Optional[dict[str, Any]] = None) -> str:
    """The resolved config as YAML, itself a valid preset file."""
    data: dict[str, Any] = {}
    if extra:
        data.update(extra)
    data.update(config.model_dump())
    return yaml.safe_dump(data, sort_keys=False)
