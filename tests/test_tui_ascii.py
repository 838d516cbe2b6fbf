"""MEDCLS_ASCII=1 (issue 16, point 10): every glyph on every screen is ASCII, and the three loss series
are told apart by letters (s, e, v) with a legend that names them."""
from __future__ import annotations

import json

from medcls_tui.ascii_filter import ascii_char, to_ascii
from medcls_tui.screens.confirm_quit import ConfirmQuitScreen
from medcls_tui.screens.extend_run import ExtendRunScreen
from medcls_tui.screens.run_detail import RunDetailScreen
from medcls_tui.screens.runs import RunsScreen
from medcls_tui.screens.save_preset import SavePresetScreen
from medcls_tui.screens.training import TrainingScreen
from medcls_tui.tui_settings import AppSettings
from test_tui_helpers import (
    NIH_CLASSES,
    make_app,
    picker_ready,
    screen_text,
    scripted_events,
    show_scripted_run,
    wait_for,
)


def non_ascii(text: str) -> set[str]:
    return {c for c in text if ord(c) > 127}


def test_every_glyph_class_maps_to_one_ascii_cell():
    for glyph, want in [("╭", "+"), ("─", "-"), ("│", "|"), ("┤", "|"), ("┼", "+"), ("━", "-"), ("█", "#"), ("▞", "#"),
                        ("▐", "["), ("▌", "]"), ("▼", "v"), ("⭘", "o"), ("⣿", "*"), ("—", "-"), ("…", "~"),
                        ("é", "e")]:
        assert ascii_char(glyph) == want, glyph
    assert to_ascii("▐X▌ bf16 — ok") == "[X] bf16 - ok"


def test_ascii_setting_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MEDCLS_ASCII", "1")
    assert AppSettings().ascii
    monkeypatch.setenv("MEDCLS_ASCII", "0")
    assert not AppSettings().ascii


def _write_run(root, name="nih-run"):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: resnet18\n")
    events = scripted_events(f"runs/{name}", multi_label=True, classes=NIH_CLASSES)
    (run / "metrics.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    (run / "summary.json").write_text(json.dumps({
        "status": "finished", "model": "resnet18", "dataset": "nih", "epochs_completed": 3,
        "monitor": "val_auroc", "best_value": 0.78, "best_epoch": 2}))
    (run / "checkpoints" / "last.pt").write_bytes(b"")


async def test_every_screen_is_ascii_and_loss_series_are_lettered(tmp_path):
    _write_run(tmp_path / "runs")
    app = make_app(tmp_path / "runs")
    app.settings.ascii = True
    seen: dict[str, str] = {}

    async def capture(name: str) -> str:
        await pilot.pause()
        seen[name] = screen_text(app)
        return seen[name]

    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await capture("picker")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SavePresetScreen), what="save dialog")
        await capture("save preset")
        await pilot.press("escape")
        await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: "Batch size" in screen_text(app), what="advisor")
        await capture("advisor")
        await pilot.press("escape")
        await picker_ready(pilot)

        show_scripted_run(app, scripted_events("runs/demo-run"))
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen), what="live screen")
        loss = await capture("live loss")
        for view in "234":
            await pilot.press(view)
            await capture(f"live view {view}")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuitScreen), what="quit dialog")
        await capture("quit dialog")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        app.session.control.finished.set()  # the scripted run "ends" so the runs screen can extend one

        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and "nih-run" in screen_text(app))
        await capture("runs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="run detail")
        for view in "14":
            await pilot.press(view)
            await capture(f"detail view {view}")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="extend dialog")
        await capture("extend dialog")
        await pilot.press("escape")

    for name, text in seen.items():
        assert not non_ascii(text), f"{name}: {sorted(non_ascii(text))}\n{text}"
    assert "s train/step" in loss and "e train/epoch" in loss and "v val" in loss
    plot_rows = [line for line in loss.splitlines() if line[4:5] == "|"]  # inside the chart frame
    drawn = "".join(row[5:] for row in plot_rows)
    assert {"s", "e", "v"} <= set(drawn), loss
