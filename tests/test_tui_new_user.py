"""Issue 28: what a new user still tripped over, each checked through the app (Pilot) or the CLI."""
from __future__ import annotations

import threading

import pytest

from test_tui_helpers import WAIT_S, make_app, picker_ready, screen_text, wait_for, wait_for_text


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if label in line)


@pytest.mark.parametrize("ascii_mode", [False, True])
async def test_checkboxes_say_their_state_in_text(tmp_path, ascii_mode):
    """28.2: `[x]` on, `[ ]` off (Textual drew the same X for both, `[X]` in ASCII mode)."""
    app = make_app(tmp_path / "runs")  # demo: pretrained false; mixed precision on
    app.settings.ascii = ascii_mode
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        text = screen_text(app)
        assert "[ ] timm ImageNet" in _row(text, "pretrained")
        assert "[x] bf16/fp16" in _row(text, "mixed precision")
        picker.query_one("#field-pretrained").focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: "[x] timm ImageNet" in _row(screen_text(app), "pretrained"),
                       what="pretrained checked")


class _WatchedLock:
    """ENGINE_LOCK that reports a thread having to wait for it."""

    def __init__(self, waited: threading.Event) -> None:
        self.inner = threading.RLock()
        self.waited = waited

    def __enter__(self):
        if not self.inner.acquire(blocking=False):
            self.waited.set()
            self.inner.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.inner.release()


async def test_config_check_never_runs_beside_the_engine_import(tmp_path, monkeypatch):
    """28.3: the picker's background check raced the engine-loading thread (CPython's AST state is per
    interpreter: `SystemError: AST constructor recursion depth mismatch`). An Event-gated fake import
    holds the engine import open; a config check requested meanwhile must wait for it, not run beside it."""
    import core.config.resolve
    from medcls_tui import engine_import

    importing, release, progressed = threading.Event(), threading.Event(), threading.Event()
    overlapped: list[str] = []
    real_resolve = core.config.resolve.resolve_config

    def gated_import() -> None:
        importing.set()
        release.wait(WAIT_S)
        importing.clear()

    def watched_resolve(*args, **kwargs):
        if importing.is_set():
            overlapped.append("resolve_config ran during the engine import")
            progressed.set()
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(engine_import, "_import", gated_import)
    monkeypatch.setattr(engine_import, "ENGINE_LOCK", _WatchedLock(progressed))
    monkeypatch.setattr(core.config.resolve, "resolve_config", watched_resolve)
    app = make_app(tmp_path / "runs")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, importing.is_set, what="the engine import to start")
            picker = app.picker
            picker.request_resolution()  # an edit while torch is still importing
            await wait_for(pilot, progressed.is_set, what="the check to wait for the lock (or run)")
            release.set()
            await picker_ready(pilot)
            assert not overlapped
            assert "ready" in screen_text(app)
    finally:
        release.set()


async def test_an_internal_error_is_not_shown_as_a_config_error(tmp_path, monkeypatch):
    """28.3: any exception but ConfigError is an internal error: said so with its type, logged with its
    traceback, and no field is marked wrong."""
    import core.config.resolve

    def broken(*args, **kwargs):
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=3)")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(core.config.resolve, "resolve_config", broken)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        picker = await picker_ready(pilot)
        status = str(picker.query_one("#picker-status").render())
        assert status.startswith("internal error, not your settings: SystemError: AST constructor"), status
        assert "invalid" not in " ".join(str(r.classes) for r in picker.query(".field-row"))
        log = tmp_path / "cache" / "medcls" / "tui-errors.log"
        assert "SystemError: AST constructor recursion depth mismatch" in log.read_text()
        assert str(log) in status


def _scripted_run(root, name, epochs_done, summary=None, started=None):
    """A run folder written as the engine writes it, up to `epochs_done` validations."""
    import json
    import os

    from test_tui_helpers import scripted_events

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: resnet18\n")
    records = []
    for e in scripted_events(f"{root}/{name}"):
        d = e.to_dict()
        if d["event"] == "EpochDone" and d["epoch"] > epochs_done:
            break
        records.append(d)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if started is not None:
        os.utime(run / "config.yaml", (started, started))
    return run


def test_a_live_run_is_listed_with_model_epochs_and_best_and_runs_sort_by_start(tmp_path):
    """28.4 / 28.11: a run another process is writing (no summary.json yet) shows its model, epochs and
    best after its first validation; the list is sorted by the start time it shows."""
    import os
    import re

    from typer.testing import CliRunner

    from core.runs.lock import RunLock
    from medcls_tui.cli import app as cli_app

    root = tmp_path / "runs"
    old = _scripted_run(root, "older", 3, started=1_700_000_000,
                        summary={"status": "finished", "model": "resnet18", "epochs_completed": 3,
                                 "monitor": "val_auroc", "best_value": 0.7, "best_epoch": 2})
    live = _scripted_run(root, "live", 1, started=1_800_000_000)
    lock = RunLock(live).acquire()
    try:
        os.utime(old, None)  # the older run's folder was touched last (e.g. scored): still listed second
        result = CliRunner().invoke(cli_app, ["runs", "--output_dir", str(root)])
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.search(r"live\s+running\s+val_auroc 0\.7100\s+1\s+resnet18", lines[1]), result.output
    assert lines[2].startswith("older"), result.output
    assert "started" in lines[0]


def test_runs_with_a_missing_output_dir_says_so(tmp_path, monkeypatch):
    """28.11: `medcls runs --output_dir typo` is an error naming the folder (exit 2), not "no runs"."""
    from typer.testing import CliRunner

    from medcls_tui.cli import app as cli_app

    result = CliRunner().invoke(cli_app, ["runs", "--output_dir", str(tmp_path / "typo")])
    assert result.exit_code == 2
    assert result.output.startswith("error: output_dir: ") and "typo' does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli_app, ["runs", "--output_dir", str(tmp_path / "empty")])
    assert result.exit_code == 0 and "no runs in" in result.output
    monkeypatch.chdir(tmp_path)  # the default folder before any training: a new user, not a typo
    result = CliRunner().invoke(cli_app, ["runs"])
    assert result.exit_code == 0 and "no runs yet" in result.output, result.output


def test_printed_commands_run_as_printed(tmp_path, monkeypatch):
    """28.5: the shell is told `uv run medcls ...` under uv (where a bare `medcls` is not on PATH after
    the README's set-up), else a command that exists; the farewell's runs command then runs as printed."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from medcls_tui.app import MedclsApp
    from medcls_tui.shell_command import medcls_command

    monkeypatch.setenv("UV", "/usr/bin/uv")
    assert medcls_command() == "uv run medcls"
    monkeypatch.delenv("UV")
    monkeypatch.setenv("PATH", str(tmp_path))  # no medcls entry point on PATH
    assert shlex.split(medcls_command()) == [sys.executable, "-m", "medcls_tui"]
    monkeypatch.undo()

    root = tmp_path / "out dir"
    _scripted_run(root, "done", 2, summary={"status": "finished", "epochs_completed": 2})
    line = MedclsApp(output_dir=str(root)).farewell().splitlines()[-1]
    printed = line[line.index("(") + 1:line.rindex(")")]
    assert printed.startswith(medcls_command() + " runs --output_dir ")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(shlex.split(printed), cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout and "finished" in done.stdout


def test_readme_command_table_runs_as_written():
    """28.5: the README's command table is run as `uv run medcls ...` (a bare `medcls` is not on PATH
    after its set-up)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Commands\n"):readme.index("## Datasets\n")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 6
    for row in rows:
        commands = [part for part in row.split("`") if "medcls " in part]
        assert commands and all(c.startswith("uv run medcls ") for c in commands), row


@pytest.mark.parametrize("key", ["t", "v"])
async def test_scoring_refuses_a_run_another_process_writes(tmp_path, key):
    """28.7: `t`/`v` on a run whose run.lock another process holds is refused (as `e` is): nothing is
    written into it."""
    from core.runs.lock import RunLock
    from medcls_tui.screens.evaluation import EvaluationScreen

    run = _scripted_run(tmp_path / "runs", "busy", 2, summary={"status": "finished", "epochs_completed": 2})
    app = make_app(tmp_path / "runs")
    lock = RunLock(run).acquire()
    before = sorted(p.name for p in run.iterdir())
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await picker_ready(pilot)
            app.push_screen(EvaluationScreen(run))
            await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen), what="evaluation screen")
            await pilot.pause()
            await pilot.press(key)
            await wait_for(pilot, lambda: any("cannot score now" in str(n.message) for n in app._notifications),
                           what="the refusal notice")
            notes = [str(n.message) for n in app._notifications]
            assert any("cannot score now" in n and "being written by another process" in n for n in notes), notes
            assert not app.screen.busy
            assert sorted(p.name for p in run.iterdir()) == before
    finally:
        lock.release()


async def test_text_fits_80_columns_footer_extend_dialog_and_loading_status(tmp_path, monkeypatch):
    """28.11: at 80x24 nothing is cut: the picker's footer once a run exists (`^q Qui`), the extend
    dialog's question, the status line while torch loads."""
    from medcls_tui import engine_import
    from medcls_tui.screens.extend_run import ExtendRunScreen
    from test_tui_helpers import scripted_events, show_scripted_run

    importing, release = threading.Event(), threading.Event()

    def gated_import() -> None:
        importing.set()
        release.wait(WAIT_S)

    monkeypatch.setattr(engine_import, "_import", gated_import)
    app = make_app(tmp_path / "runs")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: importing.is_set() and app.picker is not None and app.picker.is_current,
                           what="picker checked while torch loads")
            await pilot.pause()
            status = str(app.picker.query_one("#picker-status").render()).strip()
            assert status.startswith("loading") and status in screen_text(app), status
            release.set()
            await picker_ready(pilot)
            show_scripted_run(app, scripted_events(str(tmp_path / "runs" / "x")), active=False)
            await pilot.pause()
            app.pop_screen()
            await wait_for(pilot, lambda: app.screen is app.picker, what="picker")
            await wait_for_text(pilot, "w Watch", what="the picker's footer with w")
            footer = screen_text(app).splitlines()[-1]
            assert "w Watch" in footer and footer.rstrip().endswith("^q Quit"), footer
            app.push_screen(ExtendRunScreen("resnet18-synthetic-ft-20261203-061550", 20))
            await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="extend dialog")
            await pilot.pause()
            box = app.screen.query_one("#extend-dialog").region
            rows = screen_text(app).splitlines()[box.y:box.bottom]
            inside = " ".join(" ".join(row[box.x + 1:box.right - 1].split()) for row in rows)
            assert "(the LR schedule is re-planned for the new total)" in inside, inside
    finally:
        release.set()


async def test_header_names_the_output_folder_and_forgets_a_failed_start(tmp_path):
    """28.11: the picker's header said `medcls — runs` (the folder read as a screen name), and `run:
    failed` stayed after the settings that made the run fail were changed."""
    from textual.widgets import Input

    from test_tui_helpers import stub_factory

    app = make_app(tmp_path / "runs", stable=False, trainer_factory=stub_factory(fail="boom"))
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        assert app.sub_title == f"output: {tmp_path / 'runs'}/"
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: picker.start_failure is not None and app.screen is picker,
                       what="back to the picker with the failure")
        assert app.sub_title.endswith(": failed")
        picker.query_one("#field-epochs", Input).value = "3"  # the user changes the settings
        await wait_for(pilot, lambda: picker.start_failure is None and picker.is_current, what="re-checked")
        assert app.sub_title == f"output: {tmp_path / 'runs'}/"
        assert app.session is None  # w (watch) no longer offers the failed attempt


async def test_picker_edits_the_image_size(tmp_path):
    """28.11: img_size is a picker field (an NIH preset trains at 224 px: hours on a CPU)."""
    from textual.widgets import Input

    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        assert "image size      64" in screen_text(app)
        field = picker.query_one("#field-img_size", Input)
        field.value = "48"
        await wait_for(pilot, lambda: picker.is_current and picker.resolution.resolved is not None
                       and picker.resolution.resolved.config.img_size == 48, what="img_size 48 resolved")
        assert picker.resolution.resolved.sources["img_size"] == "flag"
        field.value = "7"
        await wait_for(pilot, lambda: picker.is_current and picker.resolution.error is not None, what="error")
        assert "img_size" in picker.query_one("#error-img_size").render().plain


async def test_advisor_use_with_the_same_values_is_no_edit(tmp_path):
    """28.11: `u` in the advisor marked the preset edited (`*`, ctrl+r live) when its suggestion was
    what the settings already had."""
    from medcls_tui.screens.advisor import AdvisorScreen

    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await picker_ready(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen) and app.screen.table is not None,
                       what="advisor")
        advisor = app.screen
        cfg = picker.resolution.resolved.config
        advisor.suggestion = lambda: {"batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps}
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen is picker, what="back to the picker")
        await pilot.pause()
        assert not picker.form.edited(picker.form.preset) and not picker.form.extra
        assert any("nothing changed" in str(n.message) for n in app._notifications)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AdvisorScreen), what="advisor again")
        app.screen.suggestion = lambda: {"batch_size": cfg.batch_size * 2, "grad_accum_steps": 1}
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen is picker, what="back to the picker")
        assert picker.form.extra == {"batch_size": cfg.batch_size * 2, "grad_accum_steps": 1}
        assert picker.form.edited(picker.form.preset)


def test_progress_of_a_growing_metrics_file_is_read_incrementally(tmp_path):
    """The Runs screen polls a live run every 2 s: progress_from_metrics reads only what was appended
    (a half-written line included later) and gives what a fresh full read gives."""
    import json

    import core.runs.folder
    from core.runs.folder import progress_from_metrics
    from test_tui_helpers import scripted_events

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("")
    with metrics.open("a") as fh:
        for record in (e.to_dict() for e in scripted_events(str(tmp_path))):
            line = json.dumps(record) + "\n"
            fh.write(line[:10])
            fh.flush()
            progress_from_metrics(tmp_path)  # a torn line: left for the next read
            fh.write(line[10:])
            fh.flush()
            progress_from_metrics(tmp_path)
    incremental = progress_from_metrics(tmp_path)
    core.runs.folder._PROGRESS.clear()
    assert incremental == progress_from_metrics(tmp_path)
    assert incremental["epochs_completed"] == 3 and incremental["best_epoch"] == 2
    metrics.write_text("")  # replaced by a new run's file: starts over
    assert progress_from_metrics(tmp_path) == {}
