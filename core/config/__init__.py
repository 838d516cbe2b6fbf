"""Configuration: what a run is (TrainConfig), where each value came from (tips, presets, config
files, flags), and the checks made before any data is read.

Owns: train_config (the schema), yaml_io, resolve (merge order), presets, tips / tips_doc (the spec's
tables as data), registry. May import: core.events, core.models.names and core.hardware.host (facts, no torch), and the registries of core.data,
core.augment and core.training.losses (by name only, to list choices); never core.training's loop,
core.runs or core.hardware. `from core.config import TrainConfig` is the stable import path.
"""
from core.config.train_config import (SOURCES, MODES, AUGMENTATIONS, LOSSES, PRESET_META_KEYS, UPPER_BOUNDS,
                                      DIVERGENCE_THRESHOLD_MAX, YAML_MAX_BYTES, YAML_MAX_NODES,
                                      YAML_MAX_DEPTH, MODE_SECTIONS, ConfigError, TrainConfig, FIELD_NAMES,
                                      NUMERIC_FIELDS, field_doc, ResolvedConfig)
from core.config.yaml_io import (KEY_SYNONYMS, VALUE_HINTS, unknown_keys_message, _format_validation_error,
                                 validate_layer, flatten_yaml_config, load_yaml_file, parse_yaml_text,
                                 dump_config_yaml)
