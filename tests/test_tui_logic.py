"""TUI logic that needs no UI: event buffer, run state, picker form/explanations/saving, advisor fallback."""
from __future__ import annotations

import threading

import pytest
import yaml
from typer.testing import CliRunner

from core.config import ConfigError
from core.events import EarlyStopState, EpochDone, RunFinished, StatusChanged, StepDone, TrainingWarning
from core.config.presets import find_preset, list_presets
from core.config.resolve import resolve_config
from core.runs.folder import read_metrics, read_summary
from medcls_tui import advice
from medcls_tui.event_buffer import EventBuffer
from medcls_tui.picker_logic import (
    FormModel,
    display_error,
    error_field,
    explain,
    group_presets,
    resolve_form,
    save_current,
    values_to_save,
)
from medcls_tui.run_state import RunState, downsample, fmt_duration
from test_tui_helpers import scripted_events, write_preset


# ------------------------------------------------------------------ event buffer
def test_event_buffer_is_thread_safe_and_drains_in_order():
    buf = EventBuffer()
    assert buf  # an empty buffer must stay truthy: the engine does `on_event or default`
    n, threads = 5000, 4

    def produce(k):
        for i in range(n):
            buf((k, i))

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    got = []
    while any(w.is_alive() for w in workers):
        got.extend(buf.drain())
    got.extend(buf.drain())
    assert len(got) == n * threads == buf.appended
    for k in range(threads):
        assert [i for kk, i in got if kk == k] == list(range(n))
    assert buf.drain() == []


# ------------------------------------------------------------------ run state
def test_run_state_folds_events():
    state = RunState()
    state.apply_all(scripted_events(epochs_done=3, steps_per_epoch=20, epochs=10))
    assert state.status == "running" and state.epochs == 10 and state.epoch == 4 and state.step == 10
    assert state.global_step == 70 and state.total_steps == 200
    assert [r.epoch for r in state.epoch_log] == [1, 2, 3]
    assert state.best_value == 0.78 and state.best_epoch == 2 and state.wait == 1 and state.patience == 5
    assert [w.kind for w in state.warnings] == ["overfitting"]
    assert set(state.per_class_auroc) == {"Normal", "Effusion", "Nodule", "Opacity"}
    series = state.loss_series()
    assert set(series) == {"train/step", "train/epoch", "val"}
    assert series["val"][0] == [1.0, 2.0, 3.0]
    name, xs, ys = state.metric_series()
    assert name == "val_auroc" and ys == [0.71, 0.78, 0.775]
    state.apply(StatusChanged(status="paused"))
    assert state.status == "paused"
    state.apply(RunFinished(status="stopped", run_dir="x", summary={"status": "stopped"}))
    assert state.finished and state.status == "stopped"
    state.apply(StatusChanged(status="running"))  # late status events never un-finish a run
    assert state.status == "stopped"


def test_long_series_are_downsampled_for_plotting():
    xs = list(range(100_000))
    ys = [float(i % 7) for i in xs]
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) == len(dy) == 200
    assert dx[0] < dx[-1] and all(0 <= y <= 6 for y in dy)
    state = RunState()
    for i in range(1, 20_001):
        state.apply(StepDone(epoch=1, step=i, steps_per_epoch=20_000, global_step=i, total_steps=20_000,
                             loss=1.0, lr=0.1, images_per_sec=1.0, elapsed_s=1.0, eta_s=1.0))
    assert len(state.loss_series()["train/step"][0]) <= 240
    assert len(state.lr_series()[0]) <= 240


def test_run_state_from_metrics_jsonl(tmp_path):
    """A real tiny run's metrics.jsonl folds into the same structure as live events."""
    from core.training.trainer import Trainer

    flags = {"dataset": "synthetic", "model": "resnet18", "img_size": 32, "synthetic_size": 96, "epochs": 2,
             "batch_size": 16, "num_workers": 0, "output_dir": str(tmp_path), "run_name": "r", "log_every": 2,
             "max_steps_per_epoch": 3, "pretrained": False}
    live = RunState()
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=live.apply)
    trainer.fit()
    past = RunState.from_records(read_metrics(trainer.run_dir), read_summary(trainer.run_dir))
    assert past.status == live.status == "finished"
    assert [r.epoch for r in past.epoch_log] == [r.epoch for r in live.epoch_log] == [1, 2]
    assert past.best_value == pytest.approx(live.best_value)
    assert past.per_class_auroc == pytest.approx(live.per_class_auroc)
    assert past.step_x  # sparse "Step" records (log_every)


def test_fmt_duration():
    assert fmt_duration(None) == "--"
    assert fmt_duration(62) == "1:02"
    assert fmt_duration(3723) == "1:02:03"


# ------------------------------------------------------------------ picker logic
def test_presets_grouped_by_dataset_budget_task_and_custom(tmp_path):
    write_preset(tmp_path / "user_presets", "mine")
    groups = dict(group_presets(list_presets()))
    assert {"dataset", "budget", "task", "custom"} <= set(groups)
    assert "nih" in [p.name for p in groups["dataset"]]
    assert "demo" in [p.name for p in groups["task"]]
    assert [p.name for p in groups["custom"] if not p.builtin] == ["mine"]
    assert [g for g, _ in group_presets(list_presets())][:3] == ["dataset", "budget", "task"]


def test_form_overrides_only_what_the_user_changed():
    demo = find_preset("demo")
    form = FormModel()
    form.choose(demo)
    assert form.text("epochs") == "20" and form.text("lr") == ""
    form.set_text("epochs", "20")  # the preset's own value is not an override
    assert form.flags() == {}
    form.set_text("epochs", "3")
    form.set_text("lr", "0.01")
    assert form.flags() == {"epochs": "3", "lr": "0.01"}
    form.set_text("lr", "  ")  # blank = back to the preset/tip
    assert form.flags() == {"epochs": "3"}
    res = resolve_form(form, vram_gib=None)
    assert res.error is None
    assert res.resolved.config.epochs == 3 and res.resolved.sources["epochs"] == "flag"
    assert res.resolved.sources["lr"] == "tip"
    form.remember(res.resolved)
    form.set_choice("augmentation", res.resolved.config.augmentation)  # same as the tip: no override
    assert "augmentation" not in form.flags()
    form.set_choice("mode", "linear_probe")
    assert form.flags()["mode"] == "linear_probe"
    assert form.choose(find_preset("nih")) == []
    assert form.flags() == {}
    assert form.edited(find_preset("demo")) and not form.edited(find_preset("nih"))
    assert form.choose(find_preset("demo")) == ["epochs", "mode"]  # kept per preset, not thrown away
    assert form.flags() == {"epochs": "3", "mode": "linear_probe"}
    assert form.reset() == ["epochs", "mode"] and form.flags() == {}
    form.choose(find_preset("nih"))
    assert not form.edited(find_preset("demo"))  # reset edits are gone for good


@pytest.mark.parametrize("key,text", [("lr", "-1"), ("epochs", "0"), ("batch_size", "big"), ("model", "nope_net")])
def test_invalid_values_give_the_engines_error_naming_the_field(key, text):
    form = FormModel()
    form.choose(find_preset("demo"))
    form.set_text(key, text)
    res = resolve_form(form, vram_gib=None)
    with pytest.raises(ConfigError) as err:
        resolve_config({key: text}, preset=str(find_preset("demo").path), vram_gib=None)
    assert res.resolved is None and res.error == str(err.value)
    assert res.field == key
    assert key in display_error(res.error) and not display_error(res.error).startswith("command line")


def test_error_field_parses_engine_messages():
    assert error_field("command line: lr: must be > 0 (got -1.0)") == "lr"
    assert error_field("data_dir: --dataset nih needs --data_dir pointing at the downloaded data") == "data_dir"
    assert error_field("preset 'x' (/a/b.yaml): epochs: must be >= 1 (got 0)") == "epochs"
    assert error_field("something else entirely") is None


def test_explanations_come_from_the_tips():
    from core.config import tips

    resolved = resolve_config({}, preset="demo", vram_gib=None)
    rows = {r.key: r for r in explain(resolved, vram_gib=None)}
    assert rows["lr"].source == "tip" and rows["lr"].reason == tips.lr_tip("cnn", "full_finetune").reason
    assert rows["weight_decay"].reason == tips.weight_decay_tip("cnn", "full_finetune").reason
    assert rows["augmentation"].reason == tips.augmentation_tip("single_domain", "full_finetune").reason
    # preset values are explained by what the tip would be
    assert rows["batch_size"].source == "preset"
    assert tips.batch_range_for_vram(None, "full_finetune")[2] in rows["batch_size"].reason
    assert rows["mode"].reason.startswith(tips.MODE_TABLE["full_finetune"]["when"])
    vit = {r.key: r for r in explain(resolve_config({"model": "vit_small_patch16"}, vram_gib=16.0), vram_gib=16.0)}
    assert vit["lr"].reason == tips.lr_tip("vit", "full_finetune").reason
    assert vit["layer_decay"].value == tips.LAYER_DECAY_TIP
    assert "medium compute budget" in vit["model"].reason and "Transformers" in vit["model"].reason


def test_saved_preset_is_accepted_by_medcls_train(tmp_path):
    from medcls_tui.cli import app as cli

    form = FormModel()
    form.choose(find_preset("demo"))
    form.set_text("epochs", "3")
    form.set_text("lr", "0.002")
    resolved = resolve_form(form, vram_gib=None, flags={"output_dir": str(tmp_path / "runs")}).resolved
    saved = values_to_save(resolved)
    assert saved["epochs"] == 3 and saved["lr"] == 0.002 and "output_dir" not in saved
    assert "weight_decay" not in saved  # tip-filled keys stay with the tips
    path = save_current(resolved, str(tmp_path / "mine.yaml"), "my demo", base=find_preset("demo"))
    data = yaml.safe_load(path.read_text())
    assert data["name"] == "mine" and data["group"] == "custom" and data["epochs"] == 3
    result = CliRunner().invoke(cli, ["train", "--preset", str(path), "--print-config"])
    assert result.exit_code == 0, result.output
    assert "[preset]" in result.output and "0.002" in result.output
    again = resolve_config({"output_dir": str(tmp_path / "runs")}, preset=str(path), vram_gib=None)
    assert again.config == resolved.config


def test_save_needs_a_name(tmp_path):
    resolved = resolve_config({}, preset="demo", vram_gib=None)
    with pytest.raises(ConfigError, match="name"):
        save_current(resolved, "  ")


# ------------------------------------------------------------------ advisor adapter
def test_advisor_adapter_is_core_advice_for_the_pickers_settings():
    """The screen's advice is core.hardware.advisor's for the current config, not a copy of its logic."""
    from core.hardware.advisor import table_advice
    from core.hardware.gpu_memory import GpuInfo, HardwareInfo

    t4 = GpuInfo(index=0, name="Tesla T4", total_gib=15.0, free_gib=14.6, used_gib=0.4,
                 used_by_other_processes_gib=0.0)
    hw = HardwareInfo(gpus=[t4], cpu_ram_total_gib=32.0, source="torch")
    cfg = resolve_config({"grad_checkpointing": True}, preset="demo", vram_gib=None).config
    shown = advice.table_advice(cfg, hw)
    assert shown == table_advice(cfg.model, cfg.mode, cfg.img_size, cfg.mixed_precision, hardware=hw,
                                 grad_checkpointing=True)
    assert (shown.batch_low, shown.batch_high) == (32, 64)  # a 15 GiB T4 is a 16 GB card
    assert advice.training_vram_gib(hw) == 16.0 and advice.training_vram_gib(hw, "cpu") is None
    assert advice.training_vram_gib(HardwareInfo()) is None


def test_read_hardware_reports_cpu_ram():
    hw = advice.read_hardware()
    assert hasattr(hw, "gpus") and hasattr(hw, "cpu_ram_total_gib")
    assert advice.ram_line(hw).startswith("RAM")
