"""Small panels of a run: progress header, early-stop indicator, warnings, per-class AUROC."""
from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
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


def shorten(text: str, width: int, ascii: bool = False) -> str:
    """`text` in at most `width` columns, cut in the middle so a run name keeps its start and its date."""
    if width <= 0 or len(text) <= width:
        return text
    mark = "~" if ascii else "…"
    if width <= len(mark) + 1:
        return text[:width]
    head = (width - len(mark) + 1) // 2
    tail = width - len(mark) - head
    return text[:head] + mark + (text[-tail:] if tail else "")


def progress_line(state: RunState, stable: bool, width: int = 0, ascii: bool = False) -> Text:
    """Status, run name, epoch, step, loss. With `width` (columns), the run name is shortened so the
    numbers after it always fit: they are what the line is for."""
    label = f" {status_label(state.status)} "
    tail = ""
    if state.status == "loading" and state.data_progress:
        done, total, desc = state.data_progress
        tail = f"  {desc} {done}/{total}"
    else:
        if state.epochs:
            tail += f"  epoch {state.epoch}/{state.epochs}"
        if state.steps_per_epoch:
            tail += f"  step {state.step}/{state.steps_per_epoch}"
        if state.loss is not None:
            tail += f"  loss {fmt_value(state.loss)}"
    text = Text()
    text.append(label, style=f"reverse {STATUS_STYLE.get(state.status, 'bold')}")
    if state.run_name:
        room = width - len(label) - len(tail) - 1 if width else 0
        text.append(f" {shorten(state.run_name, max(room, 8) if width else 0, ascii)}", style="bold")
    text.append(tail)
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


def speed_line(state: RunState, stable: bool, ascii: bool = False, width: int = 0) -> Text:
    """Progress bar, ETA, img/s, elapsed, memory, warning count; compact forms when `width` is tight."""
    done = 1.0 if state.status == "finished" else (state.global_step / state.total_steps if state.total_steps else 0.0)
    text = progress_bar(done, ascii=ascii)
    hidden = "--"
    eta = hidden if stable else fmt_duration(state.eta_s)
    ips = hidden if stable or state.images_per_sec is None else f"{state.images_per_sec:.0f}"
    elapsed = hidden if stable else fmt_duration(state.elapsed_s)
    # an ended run (stopped, early-stopped, failed) has no time left to estimate: no "ETA 0:00"
    parts = ([] if state.finished else [f"ETA {eta}"]) + [f"{ips} img/s", f"elapsed {elapsed}"]
    if state.gpu_mem_gib is not None:
        parts.append(f"GPU mem {hidden if stable else f'{state.gpu_mem_gib:.1f} GiB'}")
    elif state.device:
        parts.append(state.device)
    warn = ""
    if state.warnings:
        n = len(state.warnings)
        warn = f"! {n} warning{'s' if n != 1 else ''}"
        if width and len(text) + len("  ".join(parts)) + 2 + len(warn) > width:
            warn = f"! {n}"
    text.append("  ".join(parts))
    if warn:
        text.append(f"  {warn}", style="yellow")
    return text


class RefitOnResize:
    """Mixin for widgets whose text depends on their width: `show()` remembers its arguments in
    `_shown`, and a resize (the first layout, or the terminal changing) shows them again."""

    def on_resize(self) -> None:
        if getattr(self, "_shown", None) is not None:
            try:
                self.show(*self._shown)
            except NoMatches:  # resized while its screen is being removed
                pass


class RunHeader(RefitOnResize, Vertical):
    """Status, epoch/step, overall progress bar, ETA, img/s and memory: two text lines."""

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        yield Static(id="run-speed")

    def show(self, state: RunState, stable: bool = False, ascii: bool = False) -> None:
        self._shown = (state, stable, ascii)
        width = self.content_size.width
        update_if_changed(self.query_one("#run-status", Static), progress_line(state, stable, width, ascii))
        update_if_changed(self.query_one("#run-speed", Static), speed_line(state, stable, ascii, width))


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


def _class_cell(name: str, value, why: str, name_w: int, bar_w: int, ascii: bool, compact: bool) -> Text:
    cell = Text(f"{str(name)[:name_w]:<{name_w}} ")
    if value is None or value != value:
        reason = "n/a (not in mean)" if compact or not why else f"n/a: {why} (not in mean)"
        cell.append(f"  {reason}", style="dim")
        return cell
    cell.append(f"{value:.3f} ")
    filled = int(round(max(0.0, min(1.0, float(value))) * bar_w))
    cell.append(("#" if ascii else "█") * filled, style="green" if value >= 0.8 else "yellow")
    cell.append(("." if ascii else "░") * (bar_w - filled), style="dim")
    return cell


def class_auroc_text(state: RunState, ascii: bool = False, width: int = 0, height: int = 0) -> Text:
    """AUROC per class with a bar each. Given the panel's size, classes that would not fit one under the
    other go into side-by-side columns (NIH's 14 at 80x24); if they still do not fit, the title says how
    many are below and that the panel scrolls."""
    per = state.per_class_auroc
    text = Text()
    title = "AUROC per class" + (" (multi-label)" if state.multi_label else "")
    if not per:
        text.append(title + "\n", style="bold")
        text.append("after the first validation", style="dim")
        return text
    items = list(per.items())
    n = len(items)
    excluded = state.excluded_classes
    name_w = min(18, max(len(str(c)) for c in per))  # NIH's longest, Pleural_Thickening, is 18
    bar_w, gap = 12, 2
    if width:
        bar_w = max(4, min(12, width - name_w - 7))
    rows_avail = max(1, height - 1) if height else n
    ncols = 1
    if n > rows_avail and width:
        ncols = math.ceil(n / rows_avail)
        while ncols > 1:
            room = (width - gap * (ncols - 1)) // ncols - name_w - 7  # name, value, spaces
            if room >= 4:
                bar_w = min(12, room)
                break
            ncols -= 1
    rows = math.ceil(n / ncols)
    if rows > rows_avail:
        text.append(f"{title}: {rows_avail} of {rows} rows shown, scroll for the rest "
                    f"({'down' if ascii else '↓'}, mouse wheel)\n", style="bold")
    else:
        text.append(title + "\n", style="bold")
    col_w = name_w + 7 + bar_w
    for r in range(rows):
        for c in range(ncols):
            i = c * rows + r
            if i >= n:
                break
            name, value = items[i]
            cell = _class_cell(name, value, excluded.get(name, ""), name_w, bar_w, ascii, compact=ncols > 1)
            if ncols > 1:
                cell.truncate(col_w, pad=True)
            if c:
                text.append(" " * gap)
            text.append_text(cell)
        text.append("\n")
    text.rstrip()
    return text


class ClassAurocPanel(RefitOnResize, VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(id="class-auroc-text")

    def show(self, state: RunState, ascii: bool = False) -> None:
        self._shown = (state, ascii)
        size = self.scrollable_content_region.size
        update_if_changed(self.query_one("#class-auroc-text", Static),
                          class_auroc_text(state, ascii, size.width, size.height), layout=True)
