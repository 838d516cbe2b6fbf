"""`medcls`: the headless typer CLI. No sub-command opens the Textual app.

Heavy imports (torch, timm, textual) happen inside commands so `medcls --help` is instant.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Optional

import typer

from .cli_advise import advise
from .cli_data import data_app, prepare_command
from .cli_compare import register as register_compare_command
from .cli_eval import register as register_eval_commands
from .run_config import resolve_from_cli
from .train_options import split_kwargs, with_train_options

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="Train medical image classifiers with the field's tips built in.")
presets_app = typer.Typer(help="List and show presets.", no_args_is_help=True)
app.add_typer(presets_app, name="presets")
app.add_typer(data_app, name="data", help="Dataset statistics.")
app.command("prepare", help="Decode a dataset once into the resized pixel cache.")(prepare_command)
app.command("advise", help="GPU memory, the tips' batch range and (--probe) a measured safe batch size.")(advise)
register_eval_commands(app)  # eval, predict, export, explain
register_compare_command(app)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context,
                  no_mouse: bool = typer.Option(False, "--no-mouse", help="Do not capture the mouse (SSH/tmux)."),
                  output_dir: str = typer.Option("runs", "--output_dir", help="Where runs are listed and written."),
                  preset: str = typer.Option("demo", "--preset", help="Preset selected when the app opens.")) -> None:
    """With no command: open the app. Without a terminal, train the preset headless instead."""
    if ctx.invoked_subcommand is not None:
        return
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        from .shell_command import command

        typer.echo(f"medcls: no terminal for the app; training preset '{preset}' headless "
                   f"(`{command('train', '--help')}` for your own runs)", err=True)
        from core.config import ConfigError

        try:
            resolved, _ = resolve_from_cli({"output_dir": output_dir}, {"preset": preset})
        except ConfigError as err:
            fail(str(err))
        from core.models.pretrained import EXIT_CODE, PretrainedError

        try:
            summary = run_training(resolved)
        except PretrainedError as err:
            fail(str(err), code=EXIT_CODE)
        raise typer.Exit(1 if summary.get("status") in ("failed", "diverged", "aborted") else 0)
    from .open_app import open_app

    typer.echo(open_app(output_dir, preset, mouse=not no_mouse))  # where the runs are, once the screen is gone


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
ABORT_EXIT_CODE = 130


class _StopSignals:
    """SIGINT/SIGTERM/SIGHUP handlers that only record the signal: the first asks the engine to
    stop after the current step (checkpoint + summary), a second one asks for an abort.

    The handlers never raise KeyboardInterrupt: an interrupted `Thread.join` could let the main
    thread exit while the training thread is inside torch, and the C++ runtime then aborts the
    process ("terminate called without an active exception", no checkpoint, no summary).
    """

    def __init__(self, control, on_abort, echo_window_s: float = 0.0, echo_any_kind: bool = False) -> None:
        self.control = control
        self.on_abort = on_abort
        self.received: list[str] = []
        self._previous: dict = {}
        self.echo_window_s = echo_window_s
        """A signal to the process group arrives twice: once directly, once forwarded by the launcher
        (`uv run` forwards SIGINT/SIGTERM/SIGHUP; torchrun turns a Ctrl-C into SIGTERM to each rank).
        A second signal this soon after the first is that echo, not a request to abort."""
        self.echo_any_kind = echo_any_kind
        """Under torchrun the echo can be another signal; otherwise only the same signal is an echo,
        so two different signals (SIGTERM then SIGINT) still abort at once."""
        self._first_at: Optional[float] = None

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        import signal
        import time

        now = time.monotonic()
        name = signal.Signals(signum).name
        if (self._first_at is not None and len(self.received) == 1 and now - self._first_at < self.echo_window_s
                and (self.echo_any_kind or name == self.received[0])):
            return
        self._first_at = self._first_at if self._first_at is not None else now
        self.received.append(name)
        self.control.request_stop()
        if len(self.received) >= 2:
            self.on_abort()  # right here, so a stop that is finishing cannot race past the abort

    def install(self) -> "_StopSignals":
        import signal

        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class _QuietOnBrokenTerminal:
    """Event sink wrapper: once the terminal is gone (SIGHUP, closed pipe) printing stops
    instead of failing the run; the run folder still records everything."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.broken = False

    def __call__(self, event) -> None:
        if not self.broken:
            try:
                self.reporter(event)
            except (OSError, ValueError):  # EIO/EPIPE, or "I/O operation on closed file"
                self.broken = True

    def line(self, text: str) -> None:
        if not self.broken:
            try:
                self.reporter.line(text)
            except (OSError, ValueError):
                self.broken = True


def run_training(resolved, resume_dir=None, reporter=None) -> dict:
    """Run the engine in a thread; the main thread only waits and turns signals into stop requests.

    First SIGINT/SIGTERM/SIGHUP: stop after the current step with a checkpoint and `status: stopped`.
    A second one: write `status: aborted` to summary.json and exit at once (code 130).
    """
    from core.training.trainer import Trainer
    from core.events import Control

    from .reporter import ConsoleReporter

    from core.training.distributed import env_is_main, env_world

    control = Control()
    if not env_is_main():
        reporter = _RankQuiet()  # rank 0 prints for the job; the others print only their own errors
    sink = _QuietOnBrokenTerminal(reporter or ConsoleReporter())
    trainer = Trainer(resolved, on_event=sink, control=control, resume_dir=resume_dir)
    result: dict = {}
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.update(trainer.fit())
        except Exception as err:  # noqa: BLE001 - reported on the main thread
            errors.append(err)
        finally:
            control.finished.set()  # also when fit() failed before its own finally

    several = env_world()[1] > 1
    echo_window_s = ECHO_WINDOW_S if several else UV_ECHO_WINDOW_S
    signals = _StopSignals(control, lambda: _abort(trainer, sink), echo_window_s=echo_window_s,
                           echo_any_kind=several).install()
    thread = threading.Thread(target=target, name="medcls-train", daemon=True)
    announced = 0
    try:
        thread.start()
        while not control.finished.wait(0.1):
            if signals.received and not announced:
                announced = 1
                sink.line(f"{signals.received[0]}: stopping after this step, saving checkpoint and summary "
                          "(Ctrl-C again to abort)")
        thread.join()
    finally:
        signals.restore()
    if errors:
        raise errors[0]
    return result


ECHO_WINDOW_S = 2.0
"""Under torchrun: any second signal this soon after the first is the launcher's echo."""
from .launch import UV_ECHO_WINDOW_S  # noqa: E402 - one process or the --gpus launcher under `uv run`:
# the same signal this soon after the first is uv's echo of it


class _RankQuiet:
    """Reporter of ranks other than 0 in a torchrun job: silent (the engine sends them no events)."""

    def __call__(self, event) -> None:
        pass

    def line(self, text: str) -> None:
        pass


def _abort(trainer, sink) -> None:
    """Second signal: record the abort in summary.json, then leave without unwinding the training
    thread (os._exit: the thread may be inside torch, and normal interpreter exit would abort)."""
    try:
        trainer.write_abort_summary()
        sink.line("aborted: summary.json says so; resume from the last checkpoint with --retrain")
    except Exception as err:  # noqa: BLE001 - leaving anyway; say why the summary is missing
        sink.line(f"aborted: could not write the summary ({err})")
    finally:
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(ABORT_EXIT_CODE)


@app.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@with_train_options
def train(**kwargs: Any) -> None:
    """Train (headless). Every flag of spec/TRAINING_TIPS.md works; unset values come from the tips."""
    from core.config import ConfigError
    from core.config.resolve import format_config_table

    flags, extras = split_kwargs(kwargs)
    gpus = extras.pop("gpus", None)
    repeat, seeds = extras.pop("repeat", None), extras.pop("seeds", None)
    try:
        resolved, resume_dir = resolve_from_cli(flags, extras)
    except ConfigError as err:
        fail(str(err))
    if repeat is not None or seeds is not None:
        raise typer.Exit(_train_seeds(resolved, flags, extras, repeat, seeds, gpus))
    from core.training.distributed import env_world

    world = gpus or env_world()[1]
    if extras.get("print_config"):
        for line in format_config_table(resolved, world_size=world):
            typer.echo(line)
        raise typer.Exit(0)
    if gpus is not None and gpus > 1 and env_world()[1] == 1:
        raise typer.Exit(_launch(gpus, resolved, flags, extras))
    from core.data.base import DataError
    from core.data.location_check import check_data_location
    from core.models.pretrained import EXIT_CODE as PRETRAINED_EXIT
    from core.models.pretrained import PretrainedError
    from core.runs.resume import ResumeError
    from core.runs.lock import RunLockedError

    try:
        check_data_location(resolved.config)
    except ConfigError as err:
        fail(str(err))
    try:
        summary = run_training(resolved, resume_dir)
    except PretrainedError as err:
        fail(str(err), code=PRETRAINED_EXIT)
    except (ResumeError, RunLockedError, ConfigError, DataError) as err:
        fail(str(err))  # bad input found while setting up; nothing was written: fix it and run again
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__, code=1)
    if summary.get("status") in ("failed", "diverged", "aborted"):
        raise typer.Exit(1)


def _train_seeds(resolved, flags: dict, extras: dict, repeat, seeds, gpus) -> int:
    """--repeat / --seeds: one run per seed, in order (medcls_tui/repeat.py)."""
    from core.runs.folder import default_run_name

    from .repeat import parse_seeds, seeded_runs, train_each

    if extras.get("retrain") or (gpus or 1) > 1 or extras.get("print_config"):
        fail("--repeat/--seeds train new runs in one process: leave out --retrain, --gpus and --print-config")
    try:
        seed_list = parse_seeds(repeat, seeds, resolved.config.seed)
    except ValueError as err:
        fail(str(err))
    cfg = resolved.config
    base = cfg.run_name or default_run_name(cfg.model, cfg.dataset, cfg.mode)

    def train_one(run_flags: dict) -> dict:
        from core.config import ConfigError

        try:
            one, _ = resolve_from_cli(run_flags, {k: v for k, v in extras.items() if k != "retrain"})
        except ConfigError as err:
            fail(str(err))
        return run_training(one)

    fixed = cfg.data_seed if cfg.data_seed is not None else cfg.seed
    summaries = train_each(seeded_runs(flags, base, seed_list, fixed), train_one, typer.echo)
    names = [f"{base}-seed{s}" for s in seed_list[:len(summaries)]]
    typer.echo(f"trained {len(summaries)} of {len(seed_list)} seed(s): compare them with "
               f"`medcls compare {','.join(names)} OTHER_RUNS`")
    return 0 if all(s.get("status") in ("finished", "early_stopped") for s in summaries) and \
        len(summaries) == len(seed_list) else 1


def _launch(gpus: int, resolved, flags: dict, extras: dict) -> int:
    """--gpus N: the same command through torch.distributed.run, N ranks on this machine."""
    from core.data.location_check import check_data_location
    from core.config import ConfigError

    from .launch import check_gpus, run_torchrun, train_argv

    problem = check_gpus(gpus, resolved.config.device)
    if problem:
        fail(problem)
    try:
        check_data_location(resolved.config)
    except ConfigError as err:
        fail(str(err))
    typer.echo(f"medcls: {gpus} processes through torch.distributed.run (rank 0 writes the run folder)", err=True)
    code = run_torchrun(gpus, train_argv(flags, extras))
    return 0 if code == 0 else (2 if code == 2 else 1)


@presets_app.command("list")
def presets_list() -> None:
    """Built-in and user presets, grouped."""
    from core.config.presets import list_presets

    for info in sorted(list_presets(include_broken=True), key=lambda i: (i.group, i.name)):
        origin = "built-in" if info.builtin else str(info.path)
        text = f"BROKEN: {info.error}" if info.error else info.description
        typer.echo(f"{info.group:<8} {info.name:<24} {text}  [{origin}]")


@presets_app.command("show")
def presets_show(name: str = typer.Argument(..., help="Preset name or file.")) -> None:
    """A preset's file and the resolved config it gives, with the source of each value."""
    from core.config import ConfigError
    from core.data.location_check import check_data_location
    from core.config.presets import find_preset
    from core.config.resolve import format_config_table, resolve_config

    try:
        info = find_preset(name)
        resolved = resolve_config({}, preset=name)
    except ConfigError as err:
        fail(str(err))
    typer.echo(f"# {info.path}")
    typer.echo(info.path.read_text(encoding="utf-8").rstrip())
    typer.echo("\n# resolved")
    for line in format_config_table(resolved):
        typer.echo(line)
    try:
        check_data_location(resolved.config)
    except ConfigError as err:
        typer.echo(f"note: to train it, {err}")


@app.command("runs")
def runs_list(output_dir: Optional[str] = typer.Option(None, "--output_dir",
                                                      help="Folder holding run folders (default: runs).")) -> None:
    """Past runs, newest started first: name, status, best metric, epochs, model, start time."""
    from pathlib import Path

    from core.runs.folder import list_runs

    folder = Path(output_dir or "runs").expanduser()
    if not folder.is_dir():
        if output_dir is None and not folder.exists():  # a new user before any training: nothing is wrong
            typer.echo("no runs yet: ./runs does not exist (training creates it)")
            return
        why = "is not a folder" if folder.exists() else "does not exist"  # a typo must not read as "no runs yet"
        typer.echo(f"error: output_dir: '{output_dir or 'runs'}' {why} (give the folder that holds the run "
                   "folders; the default is runs)", err=True)
        raise typer.Exit(2)
    output_dir = str(folder)
    found = list_runs(output_dir)
    if not found:
        typer.echo(f"no runs in {output_dir}/")
        return
    typer.echo(f"{'name':<44} {'status':<14} {'best':<22} {'epochs':>6}  {'model':<18} started")
    for r in found:
        best = f"{r.monitor} {r.best_value:.4f}" if r.best_value is not None else "-"
        typer.echo(f"{r.name:<44} {r.status:<14} {best:<22} {r.epochs_completed:>6}  {r.model or '-':<18} {r.date}")


def main(argv: Optional[list[str]] = None) -> None:
    app(args=argv)


if __name__ == "__main__":
    main()
