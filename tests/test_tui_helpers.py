"""Shared helpers for the TUI tests (no tests here): app factory, waiting, scripted events, text capture."""
from __future__ import annotations

import io
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import yaml

from core.events import (
    CheckpointSaved,
    EarlyStopState,
    EpochDone,
    RunStarted,
    StepDone,
    TrainingWarning,
)

TINY_PRESET = {
    "name": "tiny",
    "group": "custom",
    "description": "tiny synthetic run for the TUI tests",
    "dataset": "synthetic",
    "model": "resnet18",
    "img_size": 32,
    "synthetic_size": 120,
    "epochs": 2,
    "batch_size": 16,
    "num_workers": 0,
    "pretrained": False,
    "run_name": "tiny-run",
}
SNAPSHOT_PRESETS = ("demo", "nih", "covidx", "low_budget", "quick_baseline")
NIH_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def write_preset(folder: Path, name: str = "tiny", **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**TINY_PRESET, "name": name, **overrides}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cpu_hardware():
    from core.hardware.gpu_memory import HardwareInfo

    return HardwareInfo(gpus=[], cpu_ram_total_gib=16.0, cpu_ram_free_gib=9.5, source="cpu")


def gpu_hardware():
    from core.hardware.gpu_memory import GpuInfo, HardwareInfo

    l4 = GpuInfo(index=0, name="NVIDIA L4", total_gib=22.0, free_gib=21.3, used_gib=0.7,
                 used_by_other_processes_gib=0.0)
    return HardwareInfo(gpus=[l4], cpu_ram_total_gib=64.0, cpu_ram_free_gib=50.0, source="nvml")


def make_app(output_dir: Path, stable: bool = True, initial_preset: str = "demo", hardware=None,
             presets: Callable | None = None, **kwargs):
    import core.training.trainer  # noqa: F401 - torch here, on the test's thread: the app's background import is then instant
    from medcls_tui.app import MedclsApp
    from medcls_tui.tui_settings import AppSettings

    settings = AppSettings(stable=stable, vram_gib=None, ascii=False, refresh_hz=10.0)
    return MedclsApp(output_dir=str(output_dir), settings=settings, hardware=hardware or cpu_hardware(),
                     initial_preset=initial_preset, presets=presets, **kwargs)


def only_presets(*names: str) -> Callable:
    """A fixed preset list (snapshots must not change when presets are added to presets/)."""

    def listing():
        from core.config.presets import list_presets

        return [p for p in list_presets() if p.name in names]

    return listing


WAIT_S = 300.0
"""Upper bound of one wait: generous, because a wait ends on its condition, never on elapsed time;
only a broken condition ever reaches it (and pytest-timeout bounds the whole test)."""


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "") -> None:
    """Let the app run until `predicate()` holds (checked between short pauses)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.05)


async def wait_for_text(pilot, *needles: str, what: str = "") -> str:
    """Wait until the screen shows every one of `needles` (a screen instance exists before it is
    composed and rendered: wait for its content, not its class); returns the screen text."""
    text = ""

    def shown() -> bool:
        nonlocal text
        text = screen_text(pilot.app)
        return all(n in text for n in needles)

    try:
        await wait_for(pilot, shown, what=what or f"screen text {needles}")
    except AssertionError as err:
        raise AssertionError(f"{err}; the screen showed:\n{text}") from None
    return text


async def picker_ready(pilot):
    """Wait until the picker's latest engine resolution is on screen."""
    from medcls_tui.screens.picker import PickerScreen

    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PickerScreen), what="picker screen")
    picker = pilot.app.screen
    await wait_for(pilot, lambda: picker.is_current, what="picker resolution")
    await wait_for(pilot, pilot.app.engine_ready.is_set, what="engine import")  # status line says "ready"
    await pilot.pause()
    return picker


def engine_threads() -> list[threading.Thread]:
    """Threads currently executing engine code (core/training/: the loop and its parts) anywhere on their stack."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        while frame is not None:
            if str(Path("core") / "training") + os.sep in frame.f_code.co_filename:
                found.append(thread)
                break
            frame = frame.f_back
    return found


def screen_text(app) -> str:
    """The current screen as plain text (what a user sees), for assertions and docs."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return console.export_text(styles=False)


def scripted_events(run_dir: str = "runs/demo-run", epochs_done: int = 3, steps_per_epoch: int = 20,
                    epochs: int = 10, multi_label: bool = False, classes: list | None = None) -> list:
    """A deterministic run history (no torch): what the engine would emit mid-run."""
    classes = list(classes) if classes else ["Atelectasis", "Effusion", "Nodule", "Pneumonia", "Mass"] \
        if multi_label else ["Normal", "Effusion", "Nodule", "Opacity"]
    config = {"model": "resnet18", "mode": "full_finetune", "dataset": "synthetic", "epochs": epochs,
              "monitor": "val_auroc", "monitor_mode": "max", "early_stopping": 5, "lr": 1e-3}
    events: list = [RunStarted(run_dir=run_dir, run_name=Path(run_dir).name, config=config, classes=classes,
                               multi_label=multi_label, n_train=540, n_val=60, steps_per_epoch=steps_per_epoch,
                               total_steps=steps_per_epoch * epochs, start_epoch=0, device="cpu",
                               amp_dtype=None)]
    total = steps_per_epoch * epochs
    gs = 0
    best, best_epoch, wait = None, None, 0
    for epoch in range(1, epochs_done + 2):
        last = epoch == epochs_done + 1
        for step in range(1, steps_per_epoch + 1):
            if last and step > steps_per_epoch // 2:
                break
            gs += 1
            lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * gs / total))
            loss = 1.4 * math.exp(-gs / 40) + 0.35 + 0.05 * math.sin(gs)
            events.append(StepDone(epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, global_step=gs,
                                   total_steps=total, loss=loss, lr=lr, images_per_sec=123.0, elapsed_s=gs * 0.5,
                                   eta_s=(total - gs) * 0.5))
        if last:
            break
        val_loss = 1.2 * math.exp(-epoch / 3) + 0.45 + (0.08 * (epoch - 2) if epoch > 2 else 0.0)
        auroc = {1: 0.71, 2: 0.78, 3: 0.775, 4: 0.77}.get(epoch, 0.77)
        per = {c: round(min(0.99, auroc + 0.04 * (i % 5 - 2)), 3) for i, c in enumerate(classes)}
        events.append(EpochDone(epoch=epoch, epochs=epochs, train_loss=1.4 * math.exp(-epoch * steps_per_epoch / 40) + 0.4,
                                metrics={"val_loss": val_loss, "val_auroc": auroc, "val_auroc_per_class": per},
                                lr=1e-3, elapsed_s=epoch * 10.0))
        improved = best is None or auroc > best
        if improved:
            best, best_epoch, wait = auroc, epoch, 0
        else:
            wait += 1
        events.append(EarlyStopState(monitor="val_auroc", mode="max", value=auroc, best_value=best,
                                     best_epoch=best_epoch, patience=5, wait=wait, improved=improved,
                                     should_stop=False))
        events.append(CheckpointSaved(path=f"{run_dir}/checkpoints/last.pt", reason="epoch", epoch=epoch,
                                      global_step=gs))
    events.append(TrainingWarning(kind="overfitting", epoch=epochs_done,
                                  message=f"epoch {epochs_done}: train loss decreasing while val loss increasing "
                                          "for 2 epochs. Early stopping, more regularization"))
    return events


def show_scripted_run(app, events: list, active: bool = True):
    """Put a scripted run into the app (no engine thread) and open the live screen."""
    from medcls_tui.app import RunSession

    session = RunSession(resolved=None)
    session.state.apply_all(events)
    if not active:
        session.control.finished.set()
    app.session = session
    app.show_training()
    return session


class StubTrainer:
    """Engine stand-in for UI-only behaviour (throttling, failures). Obeys Control like the engine."""

    def __init__(self, resolved, on_event, control, resume_dir=None, steps: int = 100, fail: str = "",
                 steps_per_epoch: int = 0):
        self.on_event, self.control = on_event, control
        self.steps, self.fail = steps, fail
        self.steps_per_epoch = steps_per_epoch or steps

    def fit(self) -> dict:
        from core.events import RunFinished, RunStarted, StatusChanged, StepDone

        status = "finished"
        try:
            if self.fail:
                raise RuntimeError(self.fail)
            spe = self.steps_per_epoch
            epochs = max(1, self.steps // spe)
            self.on_event(RunStarted(run_dir="", run_name="stub", config={"epochs": epochs}, classes=["a", "b"],
                                     multi_label=False, n_train=10, n_val=2, steps_per_epoch=spe,
                                     total_steps=self.steps, start_epoch=0, device="cpu", amp_dtype=None))
            for gs in range(1, self.steps + 1):
                self.on_event(StepDone(epoch=(gs - 1) // spe + 1, step=(gs - 1) % spe + 1, steps_per_epoch=spe,
                                       global_step=gs, total_steps=self.steps, loss=1.0 / gs, lr=0.1,
                                       images_per_sec=1.0, elapsed_s=0.0, eta_s=0.0))
                if self.control.paused:
                    self.on_event(StatusChanged(status="paused"))
                    while self.control.paused and not self.control.stop_requested:
                        self.control.wait_while_paused(0.05)
                if self.control.stop_requested:
                    status = "stopped"
                    break
            self.on_event(RunFinished(status=status, run_dir="", summary={"status": status}))
            return {"status": status}
        finally:
            self.control.finished.set()


class StepGate:
    """Holds the training thread right after chosen steps until the test lets it go, so a key
    pressed "mid-run" lands mid-run however fast or slow the machine is. A stop request (the test's
    own, or the teardown's) always lets it go."""

    def __init__(self, *hold_at: int) -> None:
        self.hold_at = set(hold_at)
        self.held_at: int | None = None
        self._go = threading.Event()
        self._held = threading.Event()

    def wrap(self, on_event, control):
        def gated(event):
            on_event(event)
            if isinstance(event, StepDone) and event.global_step in self.hold_at:
                self._go.clear()
                self.held_at = event.global_step
                self._held.set()
                while not self._go.wait(0.05) and not control.stop_requested:
                    pass
                self._held.clear()
        return gated

    def holding(self, step: int) -> bool:
        return self._held.is_set() and self.held_at == step

    def release(self) -> None:
        self._go.set()


def gated_engine(gate: StepGate):
    """A trainer_factory for the app: the real engine, its events passing through `gate`."""

    def factory(resolved, on_event, control, resume_dir=None):
        from core.training.trainer import Trainer

        return Trainer(resolved, on_event=gate.wrap(on_event, control), control=control, resume_dir=resume_dir)

    return factory


def stub_factory(**options):
    return lambda resolved, on_event, control, resume_dir=None: StubTrainer(resolved, on_event, control,
                                                                            resume_dir, **options)


async def press(pilot, *keys: str) -> None:
    """Key presses through the driver like `pilot.press`, without its wait-for-idle.

    `pilot.press` waits until the whole process is idle (up to ~1 s per wait, twice per key); with
    the training thread busy in the same process it always waits the maximum, so tests of a live
    run send the same Key events and give the app a short pause instead.
    """
    from textual import events

    app = pilot.app
    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)
        await pilot.pause(0.05)
