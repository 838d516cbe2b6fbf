"""Does the pretrained load fill every backbone tensor? One row per model family, through the product path.

No model hub is reachable here, so real hub weights cannot be downloaded. Instead, for each model a
fake Hugging Face hub cache is built in a temporary HF_HOME from the model's own state dict (timm's
full ImageNet model, classifier included, every float tensor replaced by known random values), stored
as the hub stores it (models--timm--<tag>/snapshots/<rev>/model.safetensors + refs/main, at the
pretrained_cfg's hf_hub_id). Then `core.models.build.build_model(..., pretrained=True)` loads it with
HF_HUB_OFFLINE=1 and the script counts the backbone tensors equal to the saved ones.

    uv run python bench/pretrained_keys.py                      # the six families of the spec
    uv run python bench/pretrained_keys.py --models resnet18 deit
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HF_HOME = tempfile.mkdtemp(prefix="medcls-hf-")
os.environ.update(HF_HOME=HF_HOME, HF_HUB_OFFLINE="1")  # before huggingface_hub reads its settings
os.environ.pop("HF_HUB_CACHE", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.models.build import build_model, model_family, resolve_model_name  # noqa: E402
from core.models.pretrained import hub_cache_dir, hub_weights, seed_hub_cache  # noqa: E402

FAMILIES = {"resnet": "resnet50", "vit": "vit_small_patch16", "swin": "swin_base", "convnext": "ConvNeXt",
            "mobilenet": "mobilenetv3_small", "efficientnet": "efficientnet_b0"}


def fake_hub_state(timm_name: str, seed: int) -> dict[str, torch.Tensor]:
    """The whole timm model's state dict with known values (no tensor left at its init constant)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(timm_name, pretrained=False)
    state = {}
    for key, value in model.state_dict().items():
        state[key] = torch.randn_like(value) * 0.02 if value.is_floating_point() else value.clone()
    return state


def measure(family: str, seed_name: str, seed: int) -> dict:
    timm_name = resolve_model_name(seed_name)
    weights = hub_weights(timm_name)
    saved = fake_hub_state(timm_name, seed)
    seed_hub_cache(weights, saved)
    start = time.perf_counter()
    torch.manual_seed(seed + 1)  # a different random init, so only a real load can make tensors equal
    model = build_model(timm_name, 2, "full_finetune", pretrained=True)
    load_s = time.perf_counter() - start
    own = {k: v for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    matched = sum(1 for k, v in own.items() if k in saved and torch.equal(v, saved[k]))
    return {"family": family, "model": seed_name, "timm": timm_name,
            "hub": weights.hf_hub_id, "matched": matched, "total": len(own),
            "params_m": sum(v.numel() for v in own.values()) / 1e6, "load_s": load_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: one per family of the spec")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}, torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"fake hub cache: {hub_cache_dir()} (HF_HUB_OFFLINE=1; real hub weights cannot be downloaded here)\n")
    print("| family | model (timm) | hf hub id | backbone tensors loaded | parameters | load time |")
    print("|---|---|---|---|---|---|")
    ok = True
    rows = FAMILIES.items() if not args.models else [(model_family(resolve_model_name(m)), m) for m in args.models]
    for family, name in rows:
        r = measure(family, name, args.seed)
        ok &= r["matched"] == r["total"]
        print(f"| {r['family']} | {r['model']} ({r['timm']}) | {r['hub']} | {r['matched']} / {r['total']} | "
              f"{r['params_m']:.1f} M | {r['load_s']:.1f} s |", flush=True)
    print("\nevery backbone tensor came from the cache" if ok else "\nSOME TENSORS DID NOT LOAD")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
