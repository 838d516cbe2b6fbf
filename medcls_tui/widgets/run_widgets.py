"""Small panels of a run: progress header, early-stop indicator, warnings, per-class AUROC."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ..run_state import RunState, fmt_duration, fmt_value

STATUS_STYLE = {
    "running": "bold green", "paused": "bold yellow", "stopping": "bold yellow", "loading": "bold cyan",
    "starting": "bold cyan", "finished": "bold green", "early_stopped": "bold green", "stopped": "bold yellow",
    "failed": "bold red", "diverged": "bold red", "incomplete": "bold yellow", "interrupted": "bold yellow",
    "aborted": "bold red",
}
WARNING_STYLE = {"overfitting": "yellow", "underfitting": "yellow", "oom": "red", "nonfinite": "red", "diverged": "bold red",
                 "error": "bold red", "early_stop": "green"}


def update_if_changed(widget: Static, text: Text, layout: bool = False) -> bool:
    """Static.update only when the text changed; fixed-size panels skip the layout pass."""
    if getattr(widget, "_medcls_last", None) == text:
        return False
    widget._medcls_last = text
    widget.update(text, layout=layout)
    return True


def status_label(status: str) -> str:
    return status.replace("_", " ").upper()


def progress_line(state: RunState, stable: bool) -> Text:
    text = Text()
    text.append(f" {status_label(state.status)} ", style=f"reverse {STATUS_STYLE.get(state.status, 'bold')}")
    if state.run_name:
        text.append(f" {state.run_name}", style="bold")
    if state.status == "loading" and state.data_progress:
        done, total, desc = state.data_progress
        text.append(f"  {desc} {done}/{total}")
        return text
    if state.epochs:
        text.append(f"  epoch {state.epoch}/{state.epochs}")
    if state.steps_per_epoch:
        text.append(f"  step {state.step}/{state.steps_per_epoch}")
    if state.loss is not None:
        text.append(f"  loss {fmt_value(state.loss)}")
    return text


def progress_bar(fraction: float, width: int = 22, ascii: bool = False) -> Text:
    """A one-line bar as text (cheaper to redraw than a ProgressBar widget with its three parts)."""
    fraction = max(0.0, min(1.0, fraction))
    done = int(round(fraction * width))
    full, empty = ("#", "-") if ascii else ("━", "━")
    text = Text(full * done, style="bold green" if fraction >= 1 else "bold magenta")
    text.append(empty * (width - done), style="dim")
    text.append(f" {fraction * 100:3.0f}%  ")
    return text


def speed_line(state: RunState, stable: bool, ascii: bool = False) -> Text:
    done = 1.0 if state.status == "finished" else (state.global_step / state.total_steps if state.total_steps else 0.0)
    text = progress_bar(done, ascii=ascii)
    hidden = "--"
    eta = hidden if stable else fmt_duration(state.eta_s)
    ips = hidden if stable or state.images_per_sec is None else f"{state.images_per_sec:.0f}"
    elapsed = hidden if stable else fmt_duration(state.elapsed_s)
    text.append(f"ETA {eta}  {ips} img/s  elapsed {elapsed}")
    if state.gpu_mem_gib is not None:
        text.append(f"  GPU mem {hidden if stable else f'{state.gpu_mem_gib:.1f} GiB'}")
    elif state.device:
        text.append(f"  {state.device}")
    if state.warnings:
        text.append(f"  ! {len(state.warnings)} warning(s)", style="yellow")
    return text


class RunHeader(Vertical):
    """Status, epoch/step, overall progress bar, ETA, img/s and memory: two text lines."""

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        yield Static(id="run-speed")

    def show(self, state: RunState, stable: bool = False, ascii: bool = False) -> None:
        update_if_changed(self.query_one("#run-status", Static), progress_line(state, stable))
        update_if_changed(self.query_one("#run-speed", Static), speed_line(state, stable, ascii))


def early_stop_text(state: RunState, ascii: bool = False) -> Text:
    text = Text()
    monitor = state.monitor or str(state.config.get("monitor") or "val_auroc")
    text.append("Early stopping", style="bold")
    text.append(f"  {monitor} ({state.monitor_mode})\n", style="dim")
    if state.best_epoch is None and state.monitor_value is None:
        text.append("waiting for the first validation\n", style="dim")
    else:
        text.append(f"now  {fmt_value(state.monitor_value)}\n")
        text.append(f"best {fmt_value(state.best_value)} @ epoch {state.best_epoch or '-'}\n", style="bold")
    if state.patience:
        used, total = min(state.wait, state.patience), state.patience
        full, empty = ("#", "-") if ascii else ("■", "□")
        style = "red" if used >= total else "yellow" if used else "green"
        text.append(full * used, style=style)
        text.append(empty * (total - used), style="dim")
        text.append(f" patience {used}/{total} used, {total - used} left")
    else:
        text.append("off: best epoch still kept as best.pt", style="dim")
    if state.should_stop and state.stop_reason:
        text.append(f"\n{state.stop_reason}", style="green")
    return text


class EarlyStopPanel(Static):
    """Monitored metric, best value and epoch, patience used/left."""

    def show(self, state: RunState, ascii: bool = False) -> None:
        update_if_changed(self, early_stop_text(state, ascii))


def warnings_text(state: RunState) -> Text:
    text = Text()
    if not state.warnings:
        text.append("No warnings. Watching for overfitting (train loss down, val loss up) and "
                    "underfitting (both losses plateau high).", style="dim")
        return text
    for w in reversed(state.warnings[-50:]):
        text.append(f"{w.kind}", style=WARNING_STYLE.get(w.kind, "yellow"))
        if w.epoch is not None and not w.message.startswith("epoch"):
            text.append(f" (epoch {w.epoch})", style="dim")
        text.append(f": {w.message}\n")
    return text


class WarningsPanel(VerticalScroll):
    """The engine's TrainingWarning events, newest first, as they appear."""

    def compose(self) -> ComposeResult:
        yield Static(id="warnings-text")

    def show(self, state: RunState) -> None:
        update_if_changed(self.query_one("#warnings-text", Static), warnings_text(state), layout=True)


def class_auroc_text(state: RunState, ascii: bool = False, width: int = 12) -> Text:
    per = state.per_class_auroc
    text = Text()
    title = "AUROC per class" + (" (multi-label)" if state.multi_label else "")
    text.append(title + "\n", style="bold")
    if not per:
        text.append("after the first validation", style="dim")
        return text
    name_w = min(16, max(len(str(c)) for c in per))
    excluded = state.excluded_classes
    for name, value in per.items():
        text.append(f"{str(name)[:name_w]:<{name_w}} ")
        if value is None or value != value:
            why = excluded.get(name)
            text.append(f"  n/a{': ' + why if why else ''} (not in mean)\n", style="dim")
            continue
        text.append(f"{value:.3f} ")
        filled = int(round(max(0.0, min(1.0, float(value))) * width))
        text.append(("#" if ascii else "█") * filled, style="green" if value >= 0.8 else "yellow")
        text.append(("." if ascii else "░") * (width - filled) + "\n", style="dim")
    return text


class ClassAurocPanel(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(id="class-auroc-text")

    def show(self, state: RunState, ascii: bool = False) -> None:
        update_if_changed(self.query_one("#class-auroc-text", Static), class_auroc_text(state, ascii), layout=True)
