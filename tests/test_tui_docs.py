"""docs/TUI_SCREENS.md: text captures of every screen and the key bindings, generated from the app.

    MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tui_docs.py -m slow     # rewrite the file
    uv run pytest tests/test_tui_docs.py -m slow                          # check it is current

The key tables come from the screens' BINDINGS (what the footer shows), the captures from the same
scripted, stable fixtures as the snapshot tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from medcls_tui.widgets.curves import CurvePlot
from test_tui_helpers import gpu_hardware, make_app, picker_ready, screen_text, wait_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "TUI_SCREENS.md"
README = DOC.parents[1] / "README.md"
README_START, README_END = "## The app\n", "## Architecture\n"
"""README's app section is the same text, one heading level down."""

INTRO = """\
# The medcls app: screens and keys

`uv run medcls` (no sub-command) opens the app; `uv run medcls --no-mouse` leaves the mouse to the
terminal (SSH/tmux), `uv run medcls --output_dir DIR` lists and writes runs under `DIR` (default `runs`).
Everything is keyboard-driven; the footer always shows the keys of the current screen. The
captures below are 80x24, the smallest size the layout is designed for; from 120 columns the
picker shows settings and tips side by side and the live screen shows all charts at once.

Over SSH and in tmux: use a UTF-8 locale and a 256-colour `TERM` (`tmux-256color` or
`screen-256color`); true colour and the mouse are not needed. `MEDCLS_TUI_HZ` sets the live
screen's refresh rate (default 1/s, which keeps redraw traffic and CPU low), `MEDCLS_ASCII=1` draws
every glyph in ASCII (borders, bars, arrows, checkboxes, chart axes) for terminals without box/braille
glyphs, and the three loss series as letters (`s` train/step, `e` train/epoch, `v` val). Quitting
prints where the runs are (and how to resume the last one) in the shell, as commands that run as
printed (`uv run medcls ...` under uv). For multi-hour jobs, run `uv run medcls train ...` inside tmux (the run keeps going if the connection drops) and open it
from the Runs screen: a run without `summary.json` is followed live from its `metrics.jsonl`.

Captures are regenerated with `MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tui_docs.py -m slow`.
"""

SECTIONS = [
    ("Preset picker", "picker",
     "The first screen. Presets (built-in and your saved ones) grouped by dataset, budget and task; "
     "the main settings of the highlighted preset, editable; and why each value is what it is: the "
     "value, where it came from (`[preset]`, `[tip]`, `[flag]` for your edits, `[default]`) and the "
     "tip's reason, citing its section of `docs/TIPS.md`. Every edit is checked by the engine's own config "
     "validation; an invalid value shows the engine's message under the field. Edits are kept per preset: "
     "moving to another preset and back finds them again (the list marks such presets with `*`), `ctrl+r` "
     "undoes them. `ctrl+t` trains, "
     "`ctrl+s` saves the settings as a preset YAML that `medcls train --preset FILE` accepts. Checkboxes "
     "read `[x]` on and `[ ]` off."),
    ("Picker with an invalid value", "picker_invalid",
     "Typing `-1` into LR: the engine's error, inline. Training refuses until it is fixed."),
    ("Save preset", "save",
     "A name saves to the user preset folder (`~/.config/medcls/presets`, or `$MEDCLS_PRESET_DIR`); "
     "a path ending in `.yaml` saves there. Only keys set by the preset or by you are written; the "
     "tips fill the rest on whatever machine loads it."),
    ("Advisor", "advisor",
     "GPU name, total and free memory (or CPU and RAM), the spec's batch-size range for that memory, "
     "and the suggested batch size and gradient accumulation for the chosen model, mode and image "
     "size. `p` runs the measured probe (`core/hardware/advisor.py`) when the build has it; `u` copies the "
     "suggestion into the picker (no edit when the picker already has those values)."),
    ("Live training", "training",
     "The engine runs in a worker thread; the screen redraws a few times per second from a buffer of "
     "its events, so the training loop never waits for the UI. Status, epoch/step, ETA, img/s and GPU "
     "memory; one chart at a time at 80 columns (`1`-`4` or `v`: loss, monitored metric, learning "
     "rate, AUROC per class); the early-stopping indicator (monitored metric, best value and epoch, "
     "patience used/left) and the engine's overfitting/underfitting warnings as they appear. `s` asks "
     "before stopping the run."),
    ("Live training, per-class AUROC", "training_classes",
     "View `4`: AUROC per class of the latest validation; NIH's 14 findings fit 80x24 in two columns (when "
     "classes cannot fit, the title says how many rows are shown and that the panel scrolls)."),
    ("Live training on a wide terminal", "training_wide",
     "From 120 columns all charts and the per-class AUROC are shown together."),
    ("Quit while training", "quit",
     "Quitting during a run asks first; `y` stops the run after the current step (checkpoint and "
     "summary are written, so it can be resumed), waits for the engine thread to end, then exits."),
    ("Runs", "runs",
     "Past runs in the output folder, newest started first, with status and best metric (a run still "
     "being written shows its progress from `metrics.jsonl`; the list follows the folder). `o`/`enter` "
     "opens one, `e` resumes an unfinished one exactly where it stopped (same as `medcls train --retrain`) "
     "or extends a finished one; `t` opens its evaluation (refused while another process writes the run)."),
    ("Run detail", "detail",
     "A past run's curves and early-stopping state from its `metrics.jsonl` (here the metric chart, "
     "`2`); a run still being written (a headless `medcls train`, or an extension started with `e`) is "
     "followed every 2 s."),
]


def _bindings_table() -> str:
    from medcls_tui.app import MedclsApp
    from medcls_tui.screens.advisor import AdvisorScreen
    from medcls_tui.screens.confirm_quit import ConfirmQuitScreen
    from medcls_tui.screens.confirm_stop import ConfirmStopScreen
    from medcls_tui.screens.picker import PickerScreen
    from medcls_tui.screens.run_detail import RunDetailScreen
    from medcls_tui.screens.runs import RunsScreen
    from medcls_tui.screens.save_preset import SavePresetScreen
    from medcls_tui.screens.training import TrainingScreen

    screens = [("Everywhere", MedclsApp), ("Preset picker", PickerScreen), ("Save preset", SavePresetScreen),
               ("Advisor", AdvisorScreen), ("Live training", TrainingScreen), ("Stop dialog", ConfirmStopScreen),
               ("Quit dialog", ConfirmQuitScreen), ("Runs", RunsScreen), ("Run detail", RunDetailScreen)]
    lines = ["## Key bindings", "", "| Screen | Key | Action |", "|---|---|---|"]
    for title, cls in screens:
        for binding in cls.BINDINGS:
            desc = binding.description or binding.action
            key = binding.key.replace("ctrl+", "ctrl+")
            note = ""
            if title == "Preset picker" and binding.key in ("a", "r", "w"):
                note = " (when the preset list has focus; `esc` returns to it)"
            if binding.key == "escape" and not binding.description:
                desc = "cancel"
            lines.append(f"| {title} | `{key}` | {desc}{note} |")
    lines += ["", "Arrow keys move in lists and tables, `tab`/`shift+tab` between fields, `enter` "
              "selects. The picker's `ctrl+t`/`ctrl+s` work while typing in a field.", ""]
    return "\n".join(lines)


async def _capture(name: str, tmp_path: Path, monkeypatch) -> str:
    from test_tui_snapshots import _live, _write_runs

    from medcls_tui.screens.run_detail import RunDetailScreen
    from medcls_tui.screens.runs import RunsScreen
    from medcls_tui.screens.save_preset import SavePresetScreen

    size = (140, 40) if name == "training_wide" else (80, 24)
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)  # output folder shows as "runs", not a temp path
    monkeypatch.setenv("HOME", str(tmp_path))  # the save dialog shows ~/.config/medcls/presets
    monkeypatch.delenv("MEDCLS_PRESET_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    if name in ("runs", "detail"):
        _write_runs(tmp_path / "runs")
    # scripted live runs are deterministic, so their ETA and img/s can show; dates cannot
    app = make_app(Path("runs"), hardware=gpu_hardware(), stable=name in ("runs", "detail"))
    async with app.run_test(size=size) as pilot:
        if name.startswith("training") or name == "quit":
            await _live(pilot, "4" if name == "training_classes" else None)
            if name == "quit":
                await pilot.press("ctrl+q")
        else:
            picker = await picker_ready(pilot)
            if name == "picker_invalid":
                picker.query_one("#field-lr").focus()
                await pilot.press("minus", "1")
                await picker_ready(pilot)
                picker.query_one("#presets").focus()
            elif name == "save":
                await pilot.press("ctrl+s")
                await wait_for(pilot, lambda: isinstance(app.screen, SavePresetScreen))
            elif name == "advisor":
                await pilot.press("a")
            elif name in ("runs", "detail"):
                await pilot.press("r")
                await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
                if name == "detail":
                    await pilot.press("down", "down", "enter")
                    await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
                    await pilot.press("2")
        await wait_for(pilot, lambda: all(p._drawn is not None for p in app.screen.query(CurvePlot) if p.display),
                       what="every visible chart drawn")
        await pilot.pause()
        return screen_text(app).rstrip("\n")


def _readme_with(doc: str) -> str:
    """README.md with its app section replaced by the doc's body (title dropped, headings demoted)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    body = doc.split("\n", 1)[1]
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.split("\n"))
    return text[:start] + body.rstrip("\n") + "\n\n" + text[end:]


def _render(captures: dict[str, str]) -> str:
    parts = [INTRO]
    for title, name, text in SECTIONS:
        parts += [f"## {title}", "", text, "", "```text", captures[name], "```", ""]
    parts.append(_bindings_table())
    return "\n".join(parts)


@pytest.mark.slow
async def test_screens_doc_is_current(tmp_path, monkeypatch):
    captures = {}
    for _, name, _ in SECTIONS:
        captures[name] = await _capture(name, tmp_path / name, monkeypatch)
    doc = _render(captures)
    readme = _readme_with(doc)
    if os.environ.get("MEDCLS_UPDATE_DOCS"):
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(doc, encoding="utf-8")
        README.write_text(readme, encoding="utf-8")
    assert README.read_text(encoding="utf-8") == readme, (
        "README.md's app section is out of date: MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tui_docs.py -m slow")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == doc, (
        "docs/TUI_SCREENS.md is out of date: MEDCLS_UPDATE_DOCS=1 uv run pytest tests/test_tui_docs.py -m slow")


def test_every_screen_binding_has_a_description():
    """The footer (and the docs table) needs a description for every shown key."""
    table = _bindings_table()
    assert "| Live training | `p` | Pause/resume |" in table
    assert "| Everywhere | `ctrl+q` | Quit |" in table
    for line in table.splitlines()[4:]:
        if line.startswith("|"):
            assert line.split("|")[3].strip(), line
