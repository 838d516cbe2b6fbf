"""The app's first minutes: a loading line while the engine imports, bad data dirs refused in the
picker, a run that cannot start returns to the picker with the reason (issue 16, points 1, 7, 12)."""
from __future__ import annotations

import threading

import core.training.trainer  # noqa: F401 - loaded here so the app's background import is instant once released
from medcls_tui.app import MedclsApp
from medcls_tui.screens.picker import PickerScreen
from medcls_tui.screens.training import TrainingScreen
from medcls_tui.widgets.settings_form import SettingsForm
from test_tui_helpers import make_app, only_presets, picker_ready, screen_text, wait_for, write_preset


def status(app) -> str:
    return str(app.picker.query_one("#picker-status").render())


async def test_first_screen_says_the_engine_is_loading_until_it_is(tmp_path, monkeypatch):
    release = threading.Event()
    original = MedclsApp._preload_engine

    def slow_preload(self):
        release.wait()  # the test always sets it (finally below): no time limit to outlast
        original(self)

    monkeypatch.setattr(MedclsApp, "_preload_engine", slow_preload)
    app = make_app(tmp_path / "runs")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.picker is not None and app.picker.is_current, what="picker")
            await pilot.pause()
            assert not app.engine_ready.is_set()
            assert "loading torch and timm in the background; ctrl+t trains once they are in" in screen_text(app)
            release.set()
            await wait_for(pilot, app.engine_ready.is_set, what="engine import")
            await wait_for(pilot, lambda: status(app).startswith("ready"), what="ready line")
            assert "ready: ctrl+t trains this config" in screen_text(app)
    finally:
        release.set()


async def test_run_that_cannot_start_returns_to_the_picker_with_the_reason(tmp_path):
    """Real engine: two class folders pass the picker's quick check, but hold no images."""
    data = tmp_path / "xrays"
    (data / "normal").mkdir(parents=True)
    (data / "pneumonia").mkdir()
    write_preset(tmp_path / "user_presets", "empty_folder", dataset="folder", data_dir=str(data))
    app = make_app(tmp_path / "runs", initial_preset="empty_folder", presets=only_presets("empty_folder"))
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        assert picker.resolution.trainable, picker.resolution.error
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: app.session is not None and not app.session.active, what="run to end")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="back to the picker")
        await pilot.pause()
        assert not isinstance(app.screen, TrainingScreen)
        assert status(app).startswith("could not start: ")
        assert "no images" in status(app) and str(data) in status(app)
        assert ": failed" not in app.sub_title


async def test_bad_data_dir_is_refused_in_the_picker_and_ctrl_t_starts_nothing(tmp_path):
    write_preset(tmp_path / "user_presets", "nih_here", dataset="nih", data_dir=str(tmp_path / "nope"),
                 multi_label=True, model="resnet18")
    app = make_app(tmp_path / "runs", initial_preset="nih_here", presets=only_presets("nih_here"))
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        form = picker.query_one(SettingsForm)
        assert form.error_text("data_dir") == f"data_dir: folder not found: {tmp_path / 'nope'}"
        assert picker.query_one("#row-data_dir").has_class("-invalid")
        assert app.current_resolved.config.lr == 0.001  # values and tips still show
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.session is None and isinstance(app.screen, PickerScreen)
        assert "folder not found" in status(app)
