"""Pilot tests of the preset picker, the save dialog and the advisor (80x24 and a wide terminal)."""
from __future__ import annotations

import pytest
import yaml
from textual.widgets import Input, Select
from typer.testing import CliRunner

from core.config import ConfigError
from core.data.location_check import check_data_location
from core.config.presets import find_preset
from core.config.resolve import resolve_config
from medcls_tui import advice
from medcls_tui.picker_logic import display_error
from medcls_tui.screens.advisor import AdvisorScreen
from medcls_tui.screens.picker import PickerScreen
from medcls_tui.screens.save_preset import SavePresetScreen
from medcls_tui.widgets.preset_list import PresetList
from medcls_tui.widgets.settings_form import SettingsForm
from medcls_tui.widgets.tips_panel import TipsPanel
from test_tui_helpers import gpu_hardware, make_app, picker_ready, screen_text, wait_for, write_preset

SIZES = [(80, 24), (140, 40)]


@pytest.mark.parametrize("size", SIZES)
async def test_choosing_a_preset_shows_its_settings_and_tips(tmp_path, size):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        picker = await picker_ready(pilot)
        plist = picker.query_one(PresetList)
        assert plist.current.name == "demo" and plist.has_focus
        assert picker.query_one("#field-epochs", Input).value == "20"
        # move to another preset with the keyboard
        names = []
        while plist.current.name != "covidx" and len(names) < 30:
            await pilot.press("up")
            names.append(plist.current.name)
        assert plist.current.name == "covidx"
        await picker_ready(pilot)
        # covidx needs a data folder: the check training runs, under the data dir field
        resolved = resolve_config({"output_dir": str(tmp_path / "runs")}, preset=str(find_preset("covidx").path),
                                  vram_gib=None)
        with pytest.raises(ConfigError) as err:
            check_data_location(resolved.config)
        form = picker.query_one(SettingsForm)
        assert form.error_text("data_dir") == display_error(str(err.value))
        assert picker.query_one("#field-dataset", Select).value == "covidx"
        # a folder without COVIDx label files is refused by name, while typing
        data = tmp_path / "covidx"
        data.mkdir()
        picker.query_one("#field-data_dir", Input).focus()
        await pilot.press(*str(data))
        await picker_ready(pilot)
        assert "no COVIDx label file" in form.error_text("data_dir")
        # with a label file: valid now, and the tips explain the values
        (data / "train_COVIDx9A.txt").write_text("")
        await pilot.press("end", "space", "backspace")
        await picker_ready(pilot)
        assert form.error_text("data_dir") == ""
        tips = picker.query_one(TipsPanel).plain
        assert "covidx" in tips and "early_stopping" in tips and "[tip]" in tips
        assert "Smaller dataset, watch for overfitting" in tips  # dataset tips from core.config.tips
        assert app.current_resolved.config.data_dir == str(data)
        assert app.current_resolved.sources["data_dir"] == "flag"
        text = screen_text(app)
        assert "Presets" in text and "^t Train" in text and "^s Save preset" in text


@pytest.mark.parametrize("size", SIZES)
async def test_invalid_field_shows_the_engines_error_inline(tmp_path, size):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        picker = await picker_ready(pilot)
        lr = picker.query_one("#field-lr", Input)
        lr.focus()
        await pilot.press("minus", "1")
        await picker_ready(pilot)
        with pytest.raises(ConfigError) as err:
            resolve_config({"lr": "-1", "output_dir": str(tmp_path / "runs")},
                           preset=str(find_preset("demo").path), vram_gib=None)
        expected = display_error(str(err.value))
        form = picker.query_one(SettingsForm)
        assert form.error_text("lr") == expected and "lr: must be > 0" in expected
        assert expected in screen_text(app)  # inline under the field (and in the status line)
        assert picker.query_one("#row-lr").has_class("-invalid")
        # training refuses with the same message, nothing starts
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.session is None and isinstance(app.screen, PickerScreen)
        # fixing it clears the error
        await pilot.press("backspace", "backspace", *"0.01")
        await picker_ready(pilot)
        assert form.error_text("lr") == ""
        assert app.current_resolved.config.lr == 0.01


@pytest.mark.parametrize("size", SIZES)
async def test_edits_are_kept_per_preset_and_ctrl_r_undoes_them(tmp_path, size):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        picker = await picker_ready(pilot)
        plist = picker.query_one(PresetList)
        lr = picker.query_one("#field-lr", Input)
        lr.focus()
        await pilot.press(*"0.02")
        await picker_ready(pilot)
        assert app.current_resolved.config.lr == 0.02
        await pilot.press("escape")  # back to the preset list
        await pilot.press("down")
        other = plist.current.name
        await picker_ready(pilot)
        assert other != "demo" and lr.value == "" and app.current_resolved.config.lr != 0.02
        assert " demo *" in screen_text(app)  # the list says which preset has edits
        await pilot.press("up")
        await picker_ready(pilot)
        assert plist.current.name == "demo" and lr.value == "0.02"  # the edit is back
        assert app.current_resolved.config.lr == 0.02 and app.current_resolved.sources["lr"] == "flag"
        await pilot.press("ctrl+r")
        await picker_ready(pilot)
        assert lr.value == "" and app.current_resolved.sources["lr"] == "tip"
        await wait_for(pilot, lambda: " demo *" not in screen_text(app), what="edit mark gone")


async def test_select_field_edit_reaches_the_engine(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        assert app.current_resolved.config.augmentation == "standard"
        mode = picker.query_one("#field-mode", Select)
        mode.value = "linear_probe"  # as if picked from the dropdown
        await wait_for(pilot, lambda: app.current_resolved.config.mode == "linear_probe", what="mode")
        await picker_ready(pilot)
        cfg = app.current_resolved
        # the engine re-applied the tips for linear probe: LR 0.1, no augmentation, batch 256+
        assert cfg.config.lr == 0.1 and cfg.sources["lr"] == "tip"
        assert picker.query_one("#field-augmentation", Select).value == cfg.config.augmentation == "none"
        assert "0.1 (tip)" in picker.query_one("#field-lr", Input).placeholder


async def test_save_preset_writes_yaml_that_medcls_train_accepts(tmp_path):
    from medcls_tui.cli import app as cli

    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        picker.query_one("#field-epochs", Input).focus()
        await pilot.press("ctrl+u", "3")
        await picker_ready(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SavePresetScreen), what="save dialog")
        name = app.screen.query_one("#preset-name", Input)
        assert name.value == "demo_custom"
        await pilot.press("ctrl+u", *"my_demo", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="back to picker")
        path = tmp_path / "user_presets" / "my_demo.yaml"  # MEDCLS_PRESET_DIR from conftest
        assert path.is_file()
        data = yaml.safe_load(path.read_text())
        assert data["name"] == "my_demo" and data["epochs"] == 3 and data["model"] == "resnet18"
        # the list now has the user preset, selected
        await picker_ready(pilot)
        assert picker.query_one(PresetList).current.name == "my_demo"
        assert not picker.query_one(PresetList).current.builtin
    result = CliRunner().invoke(cli, ["train", "--preset", str(path), "--print-config"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("epochs") and "3" in line and "[preset]" in line for line in result.output.splitlines())


async def test_save_dialog_shows_engine_error_and_cancel(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SavePresetScreen))
        await pilot.press("ctrl+u", "enter")
        await pilot.pause()
        assert "name" in str(app.screen.query_one("#save-error").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))
        assert not list((tmp_path / "user_presets").glob("*.yaml"))


@pytest.mark.parametrize("size", SIZES)
async def test_advisor_shows_hardware_and_table_advice(tmp_path, size, monkeypatch):
    from core.config import tips
    from core.hardware.advisor import ProbeResult, table_advice

    measured = ProbeResult(max_safe_batch=44, recommended_batch=40, grad_accum_steps=2, eval_batch_ok=True,
                           images_per_sec=None, peak_mem_gib=None, reasons=["probe reason shown"],
                           timed_out=False, model_advice=[])
    probed = []
    monkeypatch.setattr(advice, "run_probe", lambda config, time_budget_s: probed.append(config) or measured)
    app = make_app(tmp_path / "runs", hardware=gpu_hardware())
    async with app.run_test(size=size) as pilot:
        await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen))
        await pilot.pause()
        text = str(app.screen.query_one("#advisor-text").render())
        assert "NVIDIA L4" in text and "22.0 GiB total" in text and "21.3 GiB free" in text
        cfg = app.current_resolved.config
        expected = table_advice(cfg.model, cfg.mode, cfg.img_size, cfg.mixed_precision, hardware=gpu_hardware())
        assert (expected.batch_low, expected.batch_high) == (64, 128)  # a 22 GiB L4 is a 24 GB card
        assert f"spec table range {expected.batch_low}-{expected.batch_high}" in text
        assert (f"suggested batch {expected.suggested_batch} x {expected.grad_accum_steps} accumulation "
                f"= effective {expected.effective_batch}") in text
        assert tips.MEMORY_STEPS[0] in text
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.probe_state == "done", what="probe")
        text = str(app.screen.query_one("#advisor-text").render())
        assert probed == [cfg] and "max safe batch 44, recommended 40 x 2 accumulation" in text
        assert "probe reason shown" in text
        # u hands the suggestion to the picker's form
        suggestion = app.screen.suggestion()
        await pilot.press("u")
        picker = await picker_ready(pilot)
        assert app.current_resolved.config.batch_size == suggestion["batch_size"]
        assert app.current_resolved.sources["batch_size"] == "flag"
        assert picker.query_one("#field-batch_size", Input).value == str(suggestion["batch_size"])


async def test_advisor_without_gpu_says_cpu(tmp_path):
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen))
        await pilot.pause()
        text = str(app.screen.query_one("#advisor-text").render())
        assert "no GPU — CPU" in text and "RAM 16.0 GiB total" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen))


@pytest.mark.slow
async def test_advisor_measured_probe_runs(tmp_path):
    write_preset(tmp_path / "user_presets")
    app = make_app(tmp_path / "runs", initial_preset="tiny")
    app.settings.probe_time_budget_s = 20
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen))
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.probe_state != "running", what="probe")
        assert app.screen.probe_state == "done", app.screen.probe_state
        assert "max safe batch" in str(app.screen.query_one("#advisor-text").render())
