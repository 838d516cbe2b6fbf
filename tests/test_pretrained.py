"""Pretrained weights with no network: a Hugging Face hub cache built in a temporary HF_HOME, local
checkpoint files and folders, and the one-line refusals (offline without a cache, files that do not fit,
files that are not weights). conftest's `_no_model_hub` makes every test offline with an empty cache."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import REPO, TINY
from core.training.trainer import Trainer
from core.events import DataProgress
from core.models.build import build_model
from core.models.pretrained import (
    PretrainedError,
    fetch_hub_weights,
    hub_cache_dir,
    hub_weights,
    load_local_weights,
    seed_hub_cache,
)
from core.config.resolve import format_config_table, resolve_config
from medcls_tui.cli import app

MODEL = "test_resnet"  # a real timm model with hub weights (timm/test_resnet.r160_in1k), 0.4M parameters
runner = CliRunner()


def hub_state(model: str = MODEL, seed: int = 7) -> dict[str, torch.Tensor]:
    """A state dict as the hub stores it: the whole ImageNet model, classifier included, weights we know."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(model, pretrained=False)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_backbone_equals(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    own = backbone.state_dict()
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    return len(own)


def tiny_flags(tmp_path, **overrides):
    flags = {**TINY, "model": MODEL, "output_dir": str(tmp_path / "runs"), "pretrained": True,
             "max_steps_per_epoch": 2, **overrides}
    return flags


# ---------------------------------------------------------------------------- hub cache
def test_hub_weights_load_from_the_cache_offline():
    state = hub_state()
    path = seed_hub_cache(hub_weights(MODEL), state)
    assert path.is_file() and str(path).startswith(hub_cache_dir())
    assert "models--timm--test_resnet.r160_in1k/snapshots/" in str(path)
    model = build_model(MODEL, 3, "full_finetune", img_size=32, pretrained=True)
    n = assert_backbone_equals(model.backbone, state)
    assert n > 20 and not any(k.startswith("fc.") for k in model.backbone.state_dict())  # our head replaces fc
    assert model.classifier.out_features == 3


def test_missing_cache_is_one_clear_line_and_nothing_trains(tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", *cli_args(tiny_flags(tmp_path, pretrained=None))])
    assert result.exit_code == 2, result.output
    text = result.output
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    for part in ("test_resnet weights", "timm/test_resnet.r160_in1k", hub_cache_dir(),
                 "models--timm--test_resnet.r160_in1k", "HF_HUB_OFFLINE", "connect to the internet once",
                 "copy", "--pretrained_path FILE", "--no_pretrained"):
        assert part in text, part
    assert not out.exists() or not any(out.iterdir())  # no run folder: nothing trained from random weights


def test_no_pretrained_trains_from_scratch_on_purpose(tmp_path):
    events = []
    summary = Trainer(resolve_config(tiny_flags(tmp_path, pretrained=False, epochs=1), vram_gib=None),
                      on_event=events.append).fit()
    assert summary["status"] == "finished"
    notes = next(e for e in events if type(e).__name__ == "RunStarted").notes
    assert any(n.startswith("weights: random init (pretrained: false)") for n in notes)


def test_download_progress_reaches_the_engine_events(tmp_path, monkeypatch):
    """A download (simulated: huggingface_hub's tqdm driven as a real download drives it) is DataProgress."""
    import huggingface_hub

    state = hub_state()
    calls, downloaded = [], []

    def fake_download(repo_id, filename, revision=None, tqdm_class=None, **kwargs):
        calls.append((repo_id, filename))
        cached = hub_weights(MODEL) is not None and downloaded
        if tqdm_class is not None and not cached:
            bar = tqdm_class(total=3 << 20, unit="B", disable=True, name="huggingface_hub.http_get")
            for _ in range(3):
                bar.update(1 << 20)
            bar.close()
        downloaded.append(repo_id)
        return str(seed_hub_cache(hub_weights(MODEL), state))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    events = []
    trainer = Trainer(resolve_config(tiny_flags(tmp_path, epochs=1), vram_gib=None), on_event=events.append)
    assert trainer.fit()["status"] == "finished"
    assert set(calls) == {("timm/test_resnet.r160_in1k", "model.safetensors")}
    progress = [(e.done, e.total) for e in events if isinstance(e, DataProgress) and "weights" in e.description]
    assert progress == [(1, 3), (2, 3), (3, 3)]  # in MB, before any data work
    first_data = next(i for i, e in enumerate(events) if isinstance(e, DataProgress) and "weights" not in e.description)
    assert all("weights" in e.description for e in events[:first_data] if isinstance(e, DataProgress))
    note = next(e for e in events if type(e).__name__ == "RunStarted").notes
    assert any("timm pretrained hf hub timm/test_resnet.r160_in1k" in n for n in note)


def test_download_failure_names_the_cause(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    def refused(*args, **kwargs):
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(PretrainedError) as err:
        fetch_hub_weights(hub_weights(MODEL))
    msg = str(err.value)
    assert "could not be downloaded: [Errno 111] Connection refused" in msg and "\n" not in msg


def test_resume_needs_no_hub_weights(tmp_path):
    """--retrain restores every weight from last.pt: a deleted cache does not stop it."""
    import shutil

    seed_hub_cache(hub_weights(MODEL), hub_state())
    flags = tiny_flags(tmp_path, epochs=1, run_name="r")
    first = Trainer(resolve_config(flags, vram_gib=None))
    assert first.fit()["status"] == "finished"
    shutil.rmtree(hub_cache_dir())
    base = yaml.safe_load((first.run_dir / "config.yaml").read_text())
    base = {k: v for k, v in base.items() if k not in ("name", "description", "notes", "group", "tags")}
    resumed = Trainer(resolve_config({"epochs": 2}, base=base, vram_gib=None), resume_dir=first.run_dir).fit()
    assert resumed["status"] == "finished" and resumed["epochs_completed"] == 2


@pytest.mark.slow
def test_cli_in_a_fresh_process_uses_HF_HOME_offline(tmp_path):
    """The real environment path: HF_HOME + HF_HUB_OFFLINE=1 read by huggingface_hub at start-up; a
    linear probe keeps the backbone frozen, so the run's checkpoint holds exactly the cached weights."""
    hf_home = tmp_path / "hf_fresh"
    state = hub_state()
    seed_hub_cache(hub_weights(MODEL), state, cache_dir=hf_home / "hub")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    args = cli_args(tiny_flags(tmp_path, pretrained=None, epochs=1, run_name="lp", max_steps_per_epoch=2))
    cmd = [sys.executable, "-m", "medcls_tui.cli", "train", *args, "--mode", "linear_probe", "--lr", "0.1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"timm pretrained hf hub timm/test_resnet.r160_in1k from {hf_home / 'hub'}" in proc.stdout
    saved = torch.load(tmp_path / "runs" / "lp" / "checkpoints" / "last.pt", weights_only=True)["model"]
    backbone = {k.removeprefix("backbone."): v for k, v in saved.items() if k.startswith("backbone.")}
    assert len(backbone) > 20
    for key, value in backbone.items():
        assert torch.equal(value, state[key]), key


# ---------------------------------------------------------------------------- local files
@pytest.mark.parametrize("layout", ["file.pth", "file.safetensors", "save_for_hf", "hub_repo", "medcls_ckpt"])
def test_local_checkpoint_layouts_load(tmp_path, layout):
    from safetensors.torch import save_file

    state = hub_state(seed=3)
    if layout == "file.pth":
        path = tmp_path / "w.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif layout == "file.safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    elif layout == "save_for_hf":  # timm.models.save_for_hf / a downloaded hub snapshot folder
        path = tmp_path / "test_resnet_hf"
        path.mkdir()
        save_file(state, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"architecture": MODEL}))
    elif layout == "hub_repo":  # a copied cache entry models--timm--NAME
        seed_hub_cache(hub_weights(MODEL), state, cache_dir=tmp_path / "copied")
        path = tmp_path / "copied" / "models--timm--test_resnet.r160_in1k"
    else:  # a medcls run's checkpoint: Classifier keys under `model`
        source = build_model(MODEL, 5, "full_finetune", img_size=32)
        source.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
        path = tmp_path / "best.pt"
        torch.save({"model": source.state_dict(), "epoch": 3}, path)
    model = build_model(MODEL, 3, "full_finetune", img_size=32, pretrained_path=str(path))
    assert_backbone_equals(model.backbone, state)


def test_mismatched_checkpoint_is_refused_with_key_counts(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(hub_state("resnet18"), path)
    with pytest.raises(PretrainedError) as err:
        build_model(MODEL, 3, "full_finetune", img_size=32, pretrained_path=str(path))
    total = len([k for k in build_model(MODEL, 3, "full_finetune").backbone.state_dict()
                 if not k.endswith("num_batches_tracked")])
    msg = str(err.value)
    assert f"of {total} backbone tensors matched" in msg and "with another shape, e.g." in msg
    assert msg.startswith(f"pretrained_path: {path} does not fit test_resnet: ")
    matched = int(msg.split("does not fit test_resnet: ")[1].split(" of ")[0])
    assert 0 <= matched < total
    # a file with none of the model's keys: 0 matched, never a silent random-init run
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    result = runner.invoke(app, ["train", *cli_args(tiny_flags(tmp_path, pretrained_path=str(tmp_path / "other.pth")))])
    assert result.exit_code == 2 and f"0 of {total} backbone tensors matched" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_partial_fit_counts_every_missing_key(tmp_path):
    state = hub_state()
    del state["conv1.0.weight"]  # test_resnet's first conv: one tensor short of a full fit
    backbone = build_model(MODEL, 2, "full_finetune").backbone
    torch.save(state, tmp_path / "w.pth")
    total = len([k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")])
    with pytest.raises(PretrainedError, match=rf": {total - 1} of {total} backbone tensors matched \(1 missing, e.g. conv1.0.weight\)"):
        load_local_weights(backbone, tmp_path / "w.pth", MODEL)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("kind", ["pickle_with_code", "garbage.pth", "garbage.safetensors", "not_a_dict",
                                  "empty_folder"])
def test_unreadable_weights_are_one_line_exit_2(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / {"pickle_with_code": "evil.pth", "garbage.pth": "g.pth", "garbage.safetensors": "g.safetensors",
                       "not_a_dict": "list.pth", "empty_folder": "weights"}[kind]
    if kind == "pickle_with_code":
        path.write_bytes(pickle.dumps({"conv1.weight": Boom()}))
    elif kind == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "empty_folder":
        path.mkdir()
    else:
        path.write_bytes(os.urandom(4096))
    result = runner.invoke(app, ["train", *cli_args(tiny_flags(tmp_path, pretrained_path=str(path)))])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: pretrained_path: ") and str(path) in result.output
    assert not (tmp_path / "pwned").exists()  # weights_only: the pickle's code never ran
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- config and tips
def test_pretrained_is_on_by_default_and_print_config_says_where_from():
    result = runner.invoke(app, ["train", "--model", "resnet50", "--print-config"])
    assert result.exit_code == 0
    line = next(l for l in result.output.splitlines() if l.startswith("pretrained "))
    assert "True" in line and "[default]" in line and "hf hub timm/resnet50.a1_in1k" in line
    off = runner.invoke(app, ["train", "--model", "resnet50", "--no_pretrained", "--print-config"])
    line = next(l for l in off.output.splitlines() if l.startswith("pretrained "))
    assert "False" in line and "[flag]" in line and "random init on purpose" in line


@pytest.mark.parametrize("flags,warned", [
    ({"model": "vit_small_patch16", "mode": "linear_probe"}, "linear_probe on a randomly initialised backbone"),
    ({"model": "vit_small_patch16"}, "lr 5e-05 is a fine-tune LR for pretrained weights (ViT / DeiT)"),
    ({"model": "swin_base"}, "lr 5e-05 is a fine-tune LR for pretrained weights (Swin)"),
    ({"model": "resnet50", "lr": 1e-4}, "lr 0.0001 is a fine-tune LR for pretrained weights (CNN (ResNet))"),
    ({"model": "resnet50"}, None),  # 1e-3 AdamW full fine-tune is the from-scratch setting itself
])
def test_random_init_warns_when_the_tips_assume_pretrained(flags, warned):
    off = resolve_config({**flags, "pretrained": False}, vram_gib=None)
    on = resolve_config(flags, vram_gib=None)
    assert not any("randomly initialised" in w for w in on.warnings)
    scratch = [w for w in off.warnings if "randomly initialised" in w]
    if warned is None:
        assert scratch == []
    else:
        assert len(scratch) == 1 and warned in scratch[0]
        assert "from scratch use --mode full_finetune --lr 0.001 (AdamW), or --pretrained" in scratch[0]
        assert any(l == f"warning: {scratch[0]}" for l in format_config_table(off))


def test_cli_run_prints_the_random_init_warning(tmp_path):
    args = cli_args(tiny_flags(tmp_path, pretrained=False, epochs=1, max_steps_per_epoch=1, lr=1e-4))
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    assert "lr 0.0001 is a fine-tune LR for pretrained weights" in result.output


def test_demo_preset_stays_download_free():
    demo = resolve_config({}, preset="demo", vram_gib=None)
    assert demo.config.pretrained is False and demo.sources["pretrained"] == "preset"
    assert demo.config.dataset == "synthetic" and not demo.warnings
    for name in ("quick_baseline", "transformer", "best_accuracy"):
        assert resolve_config({}, preset=name, vram_gib=None).config.pretrained is True


async def test_picker_shows_the_random_init_note_in_the_tips_panel(tmp_path):
    from textual.widgets import Checkbox

    from medcls_tui.widgets.tips_panel import TipsPanel
    from test_tui_helpers import make_app, picker_ready, screen_text, write_preset

    write_preset(Path(os.environ["MEDCLS_PRESET_DIR"]), "probe", model="vit_small_patch16", mode="linear_probe",
                 pretrained=True)
    app = make_app(tmp_path / "runs", initial_preset="probe")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        box = picker.query_one("#field-pretrained", Checkbox)
        assert box.value is True
        assert "randomly initialised" not in picker.query_one(TipsPanel).plain
        box.focus()
        await pilot.press("space")
        await picker_ready(pilot)
        assert app.current_resolved.config.pretrained is False
        assert app.current_resolved.sources["pretrained"] == "flag"
        assert "linear_probe on a randomly initialised backbone" in picker.query_one(TipsPanel).plain
        assert "warning: linear_probe on a randomly" in screen_text(app)  # visible at 80x24, no scrolling


def cli_args(flags: dict) -> list[str]:
    args = []
    for key, value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(f"--{key}" if value else f"--no_{key}")
        else:
            args += [f"--{key}", str(value)]
    return args
