"""Advisor: GPU (or CPU and RAM), the spec's batch range for it, the suggested batch and accumulation
for the chosen model/mode/image size, and the measured probe (core/hardware/advisor.py) on a key."""
from __future__ import annotations

from typing import Any, Optional

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from .. import advice as adv
from ..widgets.header import MedclsHeader


def advisor_text(hardware: Any, resolved: Any, table: Any, probe: Any, probe_state: str,
                 stable: bool = False, bullet: str = "•", ascii: bool = False) -> Text:
    from core.config import tips

    dot = "/" if ascii else "·"
    text = Text()
    text.append("Hardware", style="bold underline")
    if hardware is None:
        text.append("\n reading GPU and memory...\n", style="dim")
    else:
        text.append(f"  (source: {getattr(hardware, 'source', '?')})\n", style="dim")
        gpus = list(getattr(hardware, "gpus", []) or [])
        for gpu in gpus:
            text.append(f" {adv.gpu_line(gpu)}\n")
        if not gpus:
            text.append(f" no GPU {'-' if ascii else '—'} CPU training (mixed precision is off on CPU)\n",
                        style="yellow")
        text.append(f" {adv.ram_line(hardware)}\n")
    if resolved is None:
        text.append("\nNo valid settings yet: fix them in the picker.\n", style="red")
        return text
    cfg = resolved.config
    text.append("\nBatch size", style="bold underline")
    precision = getattr(table, "precision", "") or \
        f"mixed precision {'on' if cfg.mixed_precision else 'off'} on a GPU"
    text.append(f"  for {cfg.model} {dot} {cfg.mode} {dot} {cfg.img_size} px {dot} {precision}\n", style="dim")
    if table is None:
        text.append(" (waiting for the hardware reading)\n", style="dim")
    else:
        text.append(f" spec table range {table.batch_low}-{table.batch_high}\n")
        text.append(f" suggested batch {table.suggested_batch} x {table.grad_accum_steps} accumulation "
                    f"= effective {table.effective_batch}\n", style="bold")
        for reason in getattr(table, "reasons", []) or []:
            text.append(f"   {bullet} {reason}\n", style="dim")
    current = resolved.sources.get("batch_size", "default")
    text.append(f" current setting: batch_size {cfg.batch_size} x grad_accum_steps {cfg.grad_accum_steps} "
                f"[{current}]\n")
    text.append("\nMeasured probe", style="bold underline")
    text.append("  (p: run it; u: use the suggestion in the picker)\n", style="dim")
    if probe_state == "running":
        text.append(" probing: trying growing batches on this device...\n", style="cyan")
    elif probe_state.startswith("error"):
        text.append(f" {probe_state}\n", style="red")
    elif probe is not None:
        ips = getattr(probe, "images_per_sec", None)
        peak = getattr(probe, "peak_mem_gib", None)
        text.append(f" max safe batch {probe.max_safe_batch}, recommended {probe.recommended_batch} x "
                    f"{probe.grad_accum_steps} accumulation\n", style="bold")
        if not stable:
            if ips is not None:
                text.append(f" {ips:.0f} img/s")
            if peak is not None:
                text.append(f"  peak memory {peak:.2f} GiB")
            text.append("\n")
        if getattr(probe, "timed_out", False):
            text.append(" (time budget reached: result is a lower bound)\n", style="yellow")
        for reason in getattr(probe, "reasons", []) or []:
            text.append(f"   {bullet} {reason}\n", style="dim")
    else:
        text.append(" not run yet\n", style="dim")
    text.append("\nIf you run out of memory", style="bold underline")
    text.append("  (spec: Memory Optimization)\n", style="dim")
    for i, step in enumerate(tips.MEMORY_STEPS, 1):
        text.append(f" {i}. {step}\n")
    return text


class AdvisorScreen(Screen):
    BINDINGS = [
        Binding("p", "probe", "Run probe"),
        Binding("u", "use", "Use suggestion"),
        Binding("g", "reread", "Re-read GPU"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.probe_state = "idle"
        self.table: Any = None

    def compose(self) -> ComposeResult:
        yield MedclsHeader()
        with VerticalScroll(id="advisor", classes="pane"):
            yield Static(id="advisor-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#advisor").border_title = "Batch size and memory advisor"
        if self.app.probe_result is not None and self.probe_state == "idle":
            self.probe_state = "done"
        self.refresh_view()

    def hardware_changed(self) -> None:
        self.refresh_view()

    def config_changed(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        app = self.app
        resolved = app.current_resolved
        self.table = None
        if resolved is not None and app.hardware is not None:
            try:
                self.table = adv.table_advice(resolved.config, app.hardware)
            except Exception as err:  # noqa: BLE001 - advice is best effort, never crash the screen
                self.notify(f"advice failed: {err}", severity="error")
        bullet = "*" if app.settings.ascii else "•"
        self.query_one("#advisor-text", Static).update(
            advisor_text(app.hardware, resolved, self.table, app.probe_result, self.probe_state,
                         app.settings.stable, bullet))

    # ------------------------------------------------------------------ actions
    def action_probe(self) -> None:
        resolved = self.app.current_resolved
        if resolved is None or self.probe_state == "running":
            return
        self.probe_state = "running"
        self.refresh_view()
        self._probe(resolved.config, self.app.settings.probe_time_budget_s)

    @work(thread=True, exclusive=True, group="probe", exit_on_error=False)
    def _probe(self, config: Any, budget: float) -> None:
        try:
            result = adv.run_probe(config, time_budget_s=budget)
        except Exception as err:  # noqa: BLE001 - shown on screen
            self.app.call_from_thread(self._probe_done, None, f"error: {type(err).__name__}: {err}")
            return
        self.app.call_from_thread(self._probe_done, result, "done")

    def _probe_done(self, result: Any, state: str) -> None:
        self.probe_state = state
        if result is not None:
            self.app.probe_result = result
        self.refresh_view()

    def suggestion(self) -> Optional[dict]:
        probe = self.app.probe_result
        if probe is not None and self.probe_state == "done":
            return {"batch_size": int(probe.recommended_batch), "grad_accum_steps": int(probe.grad_accum_steps)}
        if self.table is not None:
            return {"batch_size": int(self.table.suggested_batch), "grad_accum_steps": int(self.table.grad_accum_steps)}
        return None

    def action_use(self) -> None:
        values = self.suggestion()
        if values is None:
            self.notify("No suggestion yet.", severity="warning")
            return
        changed = self.app.apply_advice(values)
        if changed:
            self.notify(f"picker: batch_size {values['batch_size']} x grad_accum_steps {values['grad_accum_steps']}")
        else:
            self.notify(f"the picker already has batch_size {values['batch_size']} x grad_accum_steps "
                        f"{values['grad_accum_steps']}: nothing changed")
        self.app.pop_screen()

    def action_reread(self) -> None:
        self.app.hardware = None
        self.refresh_view()
        self.app.load_hardware()

    def action_back(self) -> None:
        self.app.pop_screen()
