"""`medcls` with no sub-command: the Textual app.

The App owns the training run (so it survives navigating between screens, docs/TUI.md): the
engine runs in a thread worker, its events go into an EventBuffer, and a timer drains the buffer
a few times per second into a RunState that the screens draw from.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from .event_buffer import EventBuffer
from .gil import training_switch_interval
from .run_state import RunState, count, fmt_value
from .tui_settings import AppSettings

TrainerFactory = Callable[..., Any]
"""Trainer(resolved, on_event=..., control=..., resume_dir=...) -> object with .fit()."""


class RunSession:
    """One run started from the app: its config, control, event buffer and folded state."""

    def __init__(self, resolved: Any, resume_dir: Optional[Path] = None) -> None:
        from core.events import Control

        self.resolved = resolved
        self.resume_dir = resume_dir
        self.control = Control()
        self.buffer = EventBuffer()
        self.state = RunState()
        if resume_dir is not None:
            from core.runs.folder import read_metrics

            self.state = RunState.for_resume(read_metrics(Path(resume_dir)))
        self.worker: Optional[Worker] = None
        self.started_at = time.time()
        self.announced = False

    @property
    def active(self) -> bool:
        """True until the engine has returned (Control.finished, set in the engine's finally)."""
        if self.control.finished.is_set():
            return False
        if self.worker is not None and self.worker.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            return False  # failed before fit() could set `finished`
        return True


class MedclsApp(App):
    """Preset picker -> advisor -> live training -> runs, all keyboard-driven."""

    TITLE = "medcls"
    CSS_PATH = "styles/medcls.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, output_dir: str = "runs", settings: Optional[AppSettings] = None,
                 hardware: Any = None, trainer_factory: Optional[TrainerFactory] = None,
                 presets: Optional[Callable[[], list]] = None, initial_preset: str = "demo") -> None:
        super().__init__()
        self.output_dir = str(output_dir)
        self.settings = settings or AppSettings()
        self.hardware = hardware
        """core.hardware.advisor HardwareInfo; read in a worker when None."""
        self.trainer_factory = trainer_factory
        self._presets = presets
        self.initial_preset = initial_preset
        self.session: Optional[RunSession] = None
        self.current_resolved: Any = None
        """The picker's latest valid ResolvedConfig (the advisor reads it)."""
        self.probe_result: Any = None
        self.picker = None
        self._last_refresh = 0.0
        self.engine_ready = threading.Event()
        """Set once torch/timm/the engine are imported (a background thread; the first screen does not wait)."""
        self._preload_started = False

    def get_line_filters(self):
        """MEDCLS_ASCII=1: every rendered line through the ASCII filter (medcls_tui/ascii_filter.py)."""
        filters = super().get_line_filters()
        if not self.settings.ascii:
            return filters
        if getattr(self, "_ascii_filter", None) is None:
            from .ascii_filter import AsciiFilter

            self._ascii_filter = AsciiFilter()
        return [*filters, self._ascii_filter]

    # ------------------------------------------------------------------ setup
    def on_mount(self) -> None:
        from .screens.loading import LoadingScreen

        if self.settings.ascii:
            self.add_class("-ascii")
        self.sub_title = self.default_sub_title()
        self.push_screen(LoadingScreen())  # drawn at once; the picker's imports (pydantic, config) follow
        self._load_picker()
        self.set_interval(self.settings.refresh_interval, self.pump)
        if self.hardware is None:
            self.load_hardware()
        self._install_stop_signals()

    def default_sub_title(self) -> str:
        """The header's second part before any run: where runs go (a bare 'runs' read as a screen name)."""
        return "" if self.settings.stable else f"output: {self.output_dir.rstrip('/')}/"

    def forget_failed_start(self) -> None:
        """The picker's settings changed after a run failed before its first step: the header's
        'run: failed' and the w key belong to that attempt, not to what is on screen now."""
        session = self.session
        if session is not None and not session.active and session.state.status == "failed" \
                and session.state.global_step == 0 and not session.state.epoch_log:
            self.session = None
            self.sub_title = self.default_sub_title()

    def _install_stop_signals(self) -> None:
        """SIGTERM/SIGHUP (a killed tmux pane, `kill`, a closed SSH session): stop the run after the
        current step with checkpoint and summary, then exit, like confirming quit."""
        import signal

        self._signals_installed: list = []
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.request_graceful_exit)
                self._signals_installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / no Unix signals
            pass

    def request_graceful_exit(self) -> None:
        self.run_worker(self._stop_then_exit(), group="shutdown", exclusive=True)

    @work(thread=True, exclusive=True, group="startup", exit_on_error=False)
    def _load_picker(self) -> None:
        from .screens.picker import PickerScreen  # noqa: F401 - the import is the slow part

        self.call_from_thread(self._show_picker)

    def _show_picker(self) -> None:
        from .screens.picker import PickerScreen

        self.picker = PickerScreen()
        self.switch_screen(self.picker)

    def start_engine_preload(self) -> None:
        """Called by the picker once its first screen is drawn: importing torch in a thread competes for
        the GIL, so it must not delay that screen."""
        if not self._preload_started:
            self._preload_started = True
            threading.Thread(target=self._preload_engine, name="medcls-preload", daemon=True).start()

    def _preload_engine(self) -> None:
        """Import the engine (torch, timm: seconds on a busy machine) while the user reads the picker.

        A daemon thread, not a worker: quitting during the import must not wait for it to finish.
        """
        from . import engine_import

        try:
            engine_import.import_engine()  # under the lock the picker's checks take (engine_import.py)
        finally:
            self.engine_ready.set()
            try:
                self.call_from_thread(self._engine_loaded)
            except RuntimeError:
                pass  # the app already ended

    def _active_screen(self) -> Any:
        """The screen on top, or None while the app shuts down: timer ticks and thread callbacks can
        land after the last screen is gone, and `self.screen` raises then."""
        screens = self.screen_stack
        return screens[-1] if screens else None

    def _engine_loaded(self) -> None:
        screen = self._active_screen()
        if hasattr(screen, "engine_loaded"):
            screen.engine_loaded()

    def list_presets(self) -> list:
        from core.config.presets import list_presets

        return (self._presets or list_presets)()

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def load_hardware(self) -> None:
        from .advice import read_hardware

        hardware = read_hardware()
        self.call_from_thread(self._hardware_ready, hardware)

    def _hardware_ready(self, hardware: Any) -> None:
        self.hardware = hardware
        screen = self._active_screen()
        if hasattr(screen, "hardware_changed"):
            screen.hardware_changed()

    def tips_vram(self) -> Optional[float] | str:
        """GPU memory the tips assume: the setting, else the app's hardware reading, else engine detection."""
        if self.settings.vram_gib != "detect":
            return self.settings.vram_gib
        if self.hardware is not None:
            from .advice import training_vram_gib

            return training_vram_gib(self.hardware)
        return "detect"

    def app_flags(self) -> dict[str, Any]:
        """Values the app itself sets on a run (never saved into presets)."""
        return {"output_dir": self.output_dir}

    # ------------------------------------------------------------------ the run
    @property
    def run_active(self) -> bool:
        return self.session is not None and self.session.active

    def start_run(self, resolved: Any, resume_dir: Optional[Path] = None) -> bool:
        """Start training in a worker thread owned by the App and show the live screen."""
        if self.run_active:
            self.notify("A run is already active: stop it first (w to watch it).", severity="warning")
            return False
        self.session = RunSession(resolved, resume_dir)
        self.session.worker = self._train(self.session)
        self.show_training()
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="training", name="medcls-train")
    def _train(self, session: RunSession) -> dict:
        factory = self.trainer_factory
        if factory is None:
            from core.training.trainer import Trainer as factory  # noqa: N813
        trainer = factory(session.resolved, on_event=session.buffer, control=session.control,
                          resume_dir=session.resume_dir)
        with training_switch_interval():
            return trainer.fit()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        session = self.session
        if session is None or event.worker is not session.worker:
            return
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            session.state.error = session.state.error or f"{type(err).__name__}: {err}"
            if not session.state.finished:
                session.state.status = "failed"
            session.state.version += 1
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.pump()

    def pump(self) -> None:
        """Timer tick: fold buffered events into the run state and redraw the screen once."""
        session = self.session
        if session is None:
            return
        events = session.buffer.drain()
        if events:
            session.state.apply_all(events)
        if self._active_screen() is None:  # shutting down: the state is folded, nothing left to draw
            return
        state = session.state
        now = time.monotonic()
        if events or not session.active or now - self._last_refresh > 1.0:
            self._last_refresh = now
            self._update_sub_title(state)
            refresh = getattr(self.screen, "refresh_view", None)
            if refresh is not None:
                refresh()
        if not session.active and not session.announced and (state.finished or state.error):
            session.announced = True
            if state.status == "failed" and state.global_step == 0 and not state.epoch_log:
                self._back_to_picker(self.result_text(state))
                return
            severity = "error" if state.status == "failed" else "information"
            self.notify(self.result_text(state), title=f"run {state.status.replace('_', ' ')}",
                        severity=severity, timeout=6)

    def _back_to_picker(self, message: str) -> None:
        """A run that failed before its first step (bad data, a config the engine refused): the live
        screen has nothing to show, so go back to the settings with the message."""
        from .screens.training import TrainingScreen

        if self.picker is None:
            return
        while isinstance(self.screen, TrainingScreen):
            self.pop_screen()
        self.picker.show_start_failure(message)

    def _update_sub_title(self, state: RunState) -> None:
        if self.settings.stable:
            return
        name = state.run_name or "run"
        if state.finished:
            self.sub_title = f"{name}: {state.status.replace('_', ' ')}"
        elif state.epochs:
            self.sub_title = f"{name}: epoch {state.epoch}/{state.epochs} {state.status}"

    def result_text(self, state: RunState) -> str:
        if state.status == "failed":
            return f"failed: {state.error or 'see error.txt in the run folder'}"
        s = state.summary
        best = (f"best {s.get('monitor')} {fmt_value(s.get('best_value'))} at epoch {s.get('best_epoch')}"
                if s.get("best_value") is not None else "no validation yet")
        return f"{count(int(s.get('epochs_completed', state.epoch) or 0), 'epoch')}, {best}"

    def farewell(self) -> str:
        """Printed in the shell after the app closes: where the runs are, and how the last one ended."""
        from core.runs.folder import list_runs

        from .screens.runs import can_resume
        from .shell_command import command

        folder = Path(self.output_dir).expanduser().resolve()
        lines = []
        state = self.session.state if self.session is not None else None
        if state is not None and state.run_name:
            where = state.run_dir or str(folder / state.run_name)
            lines.append(f"medcls: last run {state.run_name}: {state.status.replace('_', ' ')}, "
                         f"{self.result_text(state).removeprefix('failed: ')}")
            if can_resume(state.status, (Path(where) / "checkpoints" / "last.pt").is_file())[0]:
                lines.append(f"  resume it: {command('train', '--retrain', where)}")
        runs = list_runs(folder) if folder.is_dir() else []
        lines.append(f"medcls: {count(len(runs), 'run')} in {folder} ({command('runs', '--output_dir', self.output_dir)})")
        return "\n".join(lines)

    def toggle_pause(self) -> None:
        session = self.session
        if not self.run_active or session is None:
            return
        if session.control.paused:
            session.control.resume()
            self.notify("resumed")
        else:
            session.control.pause()
            self.notify("pausing after this step")
        if hasattr(self.screen, "refresh_view"):
            self.screen.refresh_view()

    def stop_run(self) -> None:
        if self.run_active and self.session is not None:
            self.session.control.request_stop()
            self.notify("stopping after this step: saving checkpoint and summary")

    def save_now(self) -> None:
        if self.run_active and self.session is not None:
            self.session.control.save_now()
            self.notify("saving a checkpoint after this step")

    def resume_run(self, run_dir: Path, epochs: Optional[int] = None) -> bool:
        """Continue a run folder exactly where it stopped (same as `medcls train --retrain`); `epochs`
        is the new total for extending a finished run (`--retrain RUN --epochs N`)."""
        from core.config import ConfigError

        from .run_config import resolve_from_cli

        flags: dict[str, Any] = {"output_dir": self.output_dir}
        if epochs is not None:
            flags["epochs"] = epochs
        try:
            resolved, resume_dir = resolve_from_cli(flags, {"retrain": str(run_dir)})
        except ConfigError as err:
            self.notify(str(err), severity="error")
            return False
        return self.start_run(resolved, resume_dir)

    # ------------------------------------------------------------------ navigation
    def show_training(self) -> None:
        from .screens.training import TrainingScreen

        if isinstance(self.screen, TrainingScreen):
            return
        if self.session is None:
            self.notify("No run yet: pick a preset and press ctrl+t to train.")
            return
        self.push_screen(TrainingScreen())

    def show_runs(self) -> None:
        from .screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def show_advisor(self) -> None:
        from .screens.advisor import AdvisorScreen

        if not isinstance(self.screen, AdvisorScreen):
            self.push_screen(AdvisorScreen())

    def resume_or_extend(self, run_dir: Path, status: str, epochs_done: int) -> None:
        """`e` on a run: an unfinished run resumes; a finished one asks how many epochs to add."""
        from .screens.extend_run import ExtendRunScreen
        from .screens.runs import can_resume

        if self.run_active:
            self.notify("A run is already active in this app: stop it first.", severity="warning")
            return
        has_checkpoint = (Path(run_dir) / "checkpoints" / "last.pt").is_file()
        if status in ("finished", "early_stopped") and has_checkpoint:
            def extend(more: Optional[int]) -> None:
                if more:
                    self.resume_run(Path(run_dir), epochs=epochs_done + more)

            self.push_screen(ExtendRunScreen(Path(run_dir).name, epochs_done), extend)
            return
        ok, why = can_resume(status, has_checkpoint)
        if not ok:
            self.notify(f"cannot resume {Path(run_dir).name}: {why}", severity="warning")
            return
        self.resume_run(Path(run_dir))

    def apply_advice(self, values: dict[str, Any]) -> list[str]:
        """Hand the advisor's batch size / accumulation to the picker's form; returns the keys changed."""
        return self.picker.apply_values(values) if self.picker is not None else []

    # ------------------------------------------------------------------ quitting
    async def action_quit(self) -> None:
        from .screens.confirm_quit import ConfirmQuitScreen

        session = self.session
        if session is not None and session.active:
            if session.control.stop_requested:
                self.notify("Still stopping: saving the checkpoint and summary...")
                return
            if isinstance(self.screen, ConfirmQuitScreen):
                return
            self.push_screen(ConfirmQuitScreen(session.state.run_name), self._quit_answer)
            return
        self.exit()

    def _quit_answer(self, confirmed: Optional[bool]) -> None:
        if confirmed:
            self.run_worker(self._stop_then_exit(), group="shutdown", exclusive=True)

    async def _stop_then_exit(self) -> None:
        """Graceful stop (checkpoint + summary), wait for the engine thread to end, then exit."""
        session = self.session
        if session is not None:
            session.control.request_stop()
            self.notify("Stopping: saving checkpoint and summary, then quitting...")
            while session.active:
                await asyncio.sleep(0.05)
            if session.worker is not None:
                try:
                    await session.worker.wait()
                except Exception:  # noqa: BLE001 - a failed run still ends; its error is in the run folder
                    pass
            self.pump()
        self.exit()

    def _remove_stop_signals(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in getattr(self, "_signals_installed", []):
                loop.remove_signal_handler(sig)
        except RuntimeError:
            pass

    def on_unmount(self) -> None:
        self._remove_stop_signals()
        # Any other way out (SIGHUP, app.exit() from code): ask the engine to stop at the next step
        # so the executor thread that Textual waits for ends promptly and still writes its summary.
        if self.session is not None and self.session.active:
            self.session.control.request_stop()
