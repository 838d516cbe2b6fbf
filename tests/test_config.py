"""Config merge order, provenance, YAML shapes and one-line errors."""
from __future__ import annotations

import pytest
import yaml

from core.config import ConfigError, TrainConfig
from core.models.build import resolve_model_name
from core.config.resolve import format_config_table, resolve_config


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_merge_order_default_tip_preset_config_flag(tmp_path):
    preset = write(tmp_path / "p.yaml", {"name": "p", "model": "resnet50", "epochs": 7, "lr": 0.5, "seed": 1})
    config = write(tmp_path / "c.yaml", {"epochs": 9, "lr": 0.25})
    r = resolve_config({"lr": 0.125}, preset=preset, config_file=config, vram_gib=None)
    assert r.config.lr == 0.125 and r.sources["lr"] == "flag"
    assert r.config.epochs == 9 and r.sources["epochs"] == "config file"
    assert r.config.seed == 1 and r.sources["seed"] == "preset"
    assert r.config.weight_decay == 1e-4 and r.sources["weight_decay"] == "tip"
    assert r.config.min_lr_ratio == 0.01 and r.sources.get("min_lr_ratio", "default") == "default"


def test_tips_fill_by_family_and_mode():
    generic = {"dataset": "folder", "data_dir": "/x"}
    vit_ft = resolve_config({**generic, "model": "vit_small_patch16", "mode": "full_finetune"}, vram_gib=24).config
    assert (vit_ft.lr, vit_ft.weight_decay, vit_ft.layer_decay, vit_ft.drop_path_rate) == (5e-5, 0.05, 0.65, 0.1)
    assert vit_ft.batch_size == 128  # 24GB+ -> 64-128, upper end for a small model
    lp = resolve_config({"model": "vit_small_patch16", "mode": "linear_probe"}, vram_gib=24).config
    assert (lp.lr, lp.weight_decay, lp.layer_decay, lp.batch_size) == (0.1, 0.0, None, 256)
    swin = resolve_config({**generic, "model": "swin_base"}, vram_gib=16).config
    assert (swin.lr, swin.drop_path_rate, swin.batch_size) == (5e-5, 0.2, 32)
    cnn = resolve_config({"model": "resnet50"}, vram_gib=8).config
    assert (cnn.lr, cnn.weight_decay, cnn.layer_decay) == (1e-3, 1e-4, None)


def test_dataset_tips_from_spec():
    nih = resolve_config({"dataset": "nih", "data_dir": "/x"}, vram_gib=24)
    assert nih.config.multi_label is True and nih.config.epochs == 100 and nih.config.batch_size == 64
    assert nih.config.loss == "bce" and "imbalanced" in nih.reasons["loss"]
    covidx = resolve_config({"dataset": "covidx", "data_dir": "/x"}, vram_gib=24).config
    assert (covidx.epochs, covidx.batch_size, covidx.early_stopping) == (50, 32, 10)
    small_gpu = resolve_config({"dataset": "nih", "data_dir": "/x"}, vram_gib=8).config
    assert small_gpu.batch_size == 32  # spec's 64 capped by the 8GB row (16-32)
    vin = resolve_config({"dataset": "vinbigdata", "data_dir": "/x"}, vram_gib=24).config
    assert (vin.epochs, vin.batch_size) == (30, 64)


def test_warmup_tip_scales_with_epochs():
    assert resolve_config({"epochs": 100}, vram_gib=None).config.warmup_epochs == 5
    assert resolve_config({"epochs": 20}, vram_gib=None).config.warmup_epochs == 1


def test_seed_yaml_shape_applies_only_to_its_mode(tmp_path):
    cfg = write(tmp_path / "c.yaml", "full_finetune:\n  layer_decay: 0.75\ndrop_path_rate: 0.2\n")
    ft = resolve_config({"model": "vit_base_patch16"}, config_file=cfg, vram_gib=None)
    assert ft.config.layer_decay == 0.75 and ft.sources["layer_decay"] == "config file"
    assert ft.config.drop_path_rate == 0.2
    lp = resolve_config({"model": "vit_base_patch16", "mode": "linear_probe"}, config_file=cfg, vram_gib=None)
    assert lp.config.layer_decay is None


@pytest.mark.parametrize("flags, needle", [
    ({"epochs": 0}, "epochs: must be >= 1"),
    ({"mode": "probe"}, "mode:"),
    ({"augmentation": "cutmix"}, "augmentation: must be one of none, standard"),
    ({"model": "resnet_9000"}, "model: unknown model 'resnet_9000'"),
    ({"dataset": "covidx", "data_dir": "/x", "multi_label": True}, "multi_label: 'covidx' is a single-label"),
    ({"label_smoothing": 1.5}, "label_smoothing: must be between 0 and 1"),
    ({"device": "tpu"}, "device: must be auto, cpu, cuda or cuda:N"),
    ({"run_name": None, "batch_size": 0}, "batch_size: must be >= 1"),
    ({"pretrained_path": "/nonexistent/w.pth"}, "pretrained_path: file not found"),
    ({"xdm_tau_step_every": 0}, "xdm_tau_step_every: must be >= 1"),
    ({"xdm_warmup_steps": -5}, "xdm_warmup_steps: must be >= 0"),
    ({"xdm_domain_lr": 0}, "xdm_domain_lr: must be > 0"),
    ({"focal_gamma": -1}, "focal_gamma: must be >= 0"),
    ({"asl_clip": 1.5}, "asl_clip: must be between 0 and 1"),
    ({"focal_alpha": 2}, "focal_alpha: must be between 0 and 1, or -1"),
    ({"loss": "focal", "class_weights": True}, "class_weights: applies to loss ce only (loss is focal"),
    ({"dataset": "nih", "data_dir": "/x", "class_weights": True}, "class_weights: applies to loss ce only (loss is bce"),
])
def test_bad_values_fail_with_one_line_naming_the_key(flags, needle):
    with pytest.raises(ConfigError) as err:
        resolve_config(flags, vram_gib=None)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_key_in_file_names_file_and_allowed_keys(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'learning_rate' \(did you mean 'lr'\?\). Allowed keys: model, mode"):
        resolve_config({}, config_file=bad, vram_gib=None)


def test_yaml_syntax_error_names_line(tmp_path):
    bad = write(tmp_path / "broken.yaml", "model: resnet50\nepochs: [1,\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+: invalid YAML"):
        resolve_config({}, config_file=bad, vram_gib=None)


def test_model_alias_case_insensitive():
    for name in ("ConvNeXt", "convnext", "DeiT", "DEIT", "vit_small_patch16", "swin_base", "MobileNetV3_Small"):
        assert resolve_config({"model": name}, vram_gib=None).config.model == name


def test_print_table_shows_source_and_reason():
    lines = format_config_table(resolve_config({"model": "resnet50", "epochs": 3}, vram_gib=None))
    lr_line = next(line for line in lines if line.startswith("lr "))
    assert "[tip]" in lr_line and "CNN (ResNet) fine-tune" in lr_line
    epochs_line = next(line for line in lines if line.startswith("epochs "))
    assert "[flag]" in epochs_line


def test_trainconfig_rejects_unknown_fields():
    with pytest.raises(Exception):
        TrainConfig(nonsense=1)


@pytest.mark.parametrize("reported_gib, card_gib", [(15.0, 16), (22.5, 24), (7.6, 8)])
def test_detected_gpu_is_read_as_its_card_class(monkeypatch, reported_gib, card_gib):
    """A '16 GB' T4 reports 15.0 GiB: the tips must use the 16 GB row, as the advisor does."""
    import core.hardware.host as hardware

    monkeypatch.setattr(hardware, "gpu_total_memory_gib", lambda device="auto": reported_gib)
    flags = {"dataset": "folder", "data_dir": "/x", "model": "vit_small_patch16", "mode": "full_finetune"}
    detected = resolve_config(flags, vram_gib="detect")
    assert detected.config.batch_size == resolve_config(flags, vram_gib=card_gib).config.batch_size
    assert f"GPU memory {card_gib}GB" in detected.reasons["batch_size"]


def test_layer_decay_default_gives_comparable_first_layer_scales():
    """Issue 12.5: 0.65 per level where the tips say so (12-block ViTs); deeper models get the decay
    that gives their earliest layers the same share of the LR, and --print-config shows that share."""
    from core.models.names import timm_layer_decay_depth as layer_decay_depth
    from core.config.resolve import format_config_table

    reference = 0.65 ** 12
    vit = resolve_config({"model": "vit_small_patch16"}, vram_gib=None)
    assert vit.config.layer_decay == 0.65 and layer_decay_depth("vit_small_patch16_224") == 12
    for model, depth in (("swin_base", 24), ("ConvNeXt", 19)):
        cfg = resolve_config({"model": model}, vram_gib=None)
        decay = cfg.config.layer_decay
        assert 0.75 <= decay <= 0.9 and cfg.sources["layer_decay"] == "tip"
        smallest = decay ** layer_decay_depth(resolve_model_name(model))
        assert layer_decay_depth(resolve_model_name(model)) == depth
        assert reference / 1.2 < smallest < reference * 1.2, (model, decay, smallest)
        assert "0.65 is for 12 blocks" in cfg.reasons["layer_decay"]
    table = "\n".join(format_config_table(resolve_config({"model": "swin_base", "layer_decay": 0.65}, vram_gib=None)))
    assert "layer_decay 0.65 on swin_base_patch4_window7_224: 25 LR levels, the earliest layers train at 3.2e-05" in table


def test_layer_decay_on_a_cnn_is_a_warning_and_ignored():
    resolved = resolve_config({"model": "resnet50", "layer_decay": 0.65}, vram_gib=None)
    assert resolved.config.layer_decay is None
    assert any("layer_decay 0.65 is ignored" in w and "CNN" in w for w in resolved.warnings)


def test_known_layer_decay_depths_match_timms_grouping():
    """The light table used by --print-config agrees with timm's own grouping."""
    from core.models.names import KNOWN_LAYER_DECAY_DEPTHS
    from core.models.names import timm_layer_decay_depth as layer_decay_depth

    for name, depth in KNOWN_LAYER_DECAY_DEPTHS.items():
        assert layer_decay_depth(name) == depth, name
