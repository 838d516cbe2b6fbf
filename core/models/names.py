"""Model names without importing timm or torch: seed aliases, timm names, families, "did you mean".

Resolving a name is needed by every command that shows a config (`presets show`, `--print-config`,
the app's picker), and importing timm costs seconds. timm's model list is therefore kept as a
snapshot, `timm_model_names.txt`, written for one timm version; while that version is installed
the snapshot is the list, otherwise (timm upgraded) the live `timm.list_models()` is used, so the
answer is always timm's own. Regenerate after upgrading timm:
    uv run python -m core.models.names --write
"""
from __future__ import annotations

import difflib
import functools
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

# Seed names of spec/TRAINING_TIPS.md -> timm names. Keys are lower case (aliases are case-insensitive).
MODEL_ALIASES = {
    "vit_small_patch16": "vit_small_patch16_224",
    "vit_base_patch16": "vit_base_patch16_224",
    "swin_base": "swin_base_patch4_window7_224",
    "resnet50": "resnet50",
    "mobilenetv3_small": "mobilenetv3_small_100",
    "efficientnet_b0": "efficientnet_b0",
    "convnext": "convnext_tiny",
    "deit": "deit_small_patch16_224",
}
SEED_MODELS = ("vit_small_patch16", "vit_base_patch16", "swin_base", "resnet50",
               "mobilenetv3_small", "efficientnet_b0", "ConvNeXt", "DeiT")
SNAPSHOT = Path(__file__).with_name("timm_model_names.txt")
"""First line `# timm <version>`, then one timm model name per line."""


class ModelNameError(ValueError):
    pass


def _installed_timm_version() -> Optional[str]:
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return None


def _read_snapshot(path: Path = SNAPSHOT) -> tuple[Optional[str], list[str]]:
    """(timm version the snapshot was written for, names); (None, []) when missing or unreadable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, []
    if not lines or not lines[0].startswith("# timm "):
        return None, []
    return lines[0][len("# timm "):].strip(), [line.strip() for line in lines[1:] if line.strip()]


@functools.lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str]:
    """Every name timm.create_model accepts (timm.list_models()), from the snapshot when it matches."""
    version, names = _read_snapshot()
    if names and version == _installed_timm_version() and "timm" not in sys.modules:
        return frozenset(names)
    import timm

    return frozenset(timm.list_models())


def resolve_model_name(name: str) -> str:
    """Seed alias or timm name -> timm name; unknown names list the aliases and the closest names."""
    key = name.strip()
    alias = MODEL_ALIASES.get(key.lower())
    if alias:
        return alias
    known = timm_model_names()
    if key in known:
        return key
    if key.lower() in known:
        return key.lower()
    hint = did_you_mean(key.lower(), list(dict.fromkeys(list(MODEL_ALIASES) + sorted(known))))
    raise ModelNameError(
        f"model: unknown model '{name}'.{hint} Allowed: {', '.join(SEED_MODELS)} (any case) or a timm model name"
    )


def did_you_mean(word: str, choices: list[str], n: int = 3, cutoff: float = 0.75) -> str:
    """' Did you mean a, b?' for the closest choices, '' when nothing is close."""
    close = difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def model_family(timm_name: str) -> str:
    """cnn / vit / swin / convnext: picks the LR, weight decay and layer-decay tips."""
    n = timm_name.lower()
    if n.startswith(("vit", "deit", "beit", "eva", "cait", "xcit")):
        return "vit"
    if n.startswith("swin"):
        return "swin"
    if n.startswith("convnext"):
        return "convnext"
    return "cnn"


def write_snapshot(path: Path = SNAPSHOT) -> Path:
    """Write timm's current model list with its version (run after upgrading timm)."""
    import timm

    path.write_text(f"# timm {timm.__version__}\n" + "\n".join(timm.list_models()) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print(f"wrote {write_snapshot()}")
    else:
        print("usage: python -m core.models.names --write")


KNOWN_LAYER_DECAY_DEPTHS = {"vit_small_patch16_224": 12, "vit_base_patch16_224": 12, "deit_small_patch16_224": 12,
                            "swin_base_patch4_window7_224": 24, "convnext_tiny": 19}
"""timm's grouping depth of the seed transformers (tests/test_config.py checks it against timm), so
showing their config needs no torch."""


def layer_decay_depth(timm_name: str):
    """Depth of the earliest layer group under layer-wise decay: the seed models' from the table (no
    torch import), any other from timm's grouping."""
    if timm_name in KNOWN_LAYER_DECAY_DEPTHS:
        return KNOWN_LAYER_DECAY_DEPTHS[timm_name]
    return timm_layer_decay_depth(timm_name)


@functools.lru_cache(maxsize=64)
def timm_layer_decay_depth(timm_name: str) -> Optional[int]:
    """Exponent of the earliest layers' LR scale under layer-wise decay: the earliest group trains at
    layer_decay ** depth x the LR. Uses timm's own grouping (as param_groups does), on a meta-device
    model so nothing is allocated; None when timm cannot group the model."""
    import timm
    import torch
    from timm.models import group_parameters

    try:
        with torch.device("meta"):
            backbone = timm.create_model(timm_name, pretrained=False, num_classes=0)
        layer_map = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    except Exception:  # noqa: BLE001 - any model timm cannot group simply has no depth to report
        return None
    return max(layer_map.values()) if layer_map else None
