"""`medcls eval | predict | export | explain`: what a finished run is for.

Thin faces over core.evaluation: they parse flags, draw progress, print tables and turn every
expected failure into one `error:` line with exit code 2.
"""
from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Iterator, Optional

import typer

from .cli_data import _ProgressPrinter

RUN = typer.Argument(..., help="Run folder, or a run name under --output_dir.")
OUTPUT_DIR = typer.Option("runs", "--output_dir", help="Folder holding run folders.")
CHECKPOINT = typer.Option("best", "--checkpoint", help="best or last.")
DEVICE = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _expected_errors() -> Iterator[None]:
    """Bad input (run, checkpoint, data, thresholds, missing extra) -> one line, exit 2; never a traceback."""
    from core.config import ConfigError
    from core.data import DataError
    from core.evaluation.run_model import RunModelError
    from core.evaluation.thresholds import ThresholdError
    from core.models.build import ModelNameError

    try:
        yield
    except (RunModelError, ThresholdError, ConfigError, DataError, ModelNameError, FileNotFoundError) as err:
        _fail(str(err))
    except OSError as err:  # an unreadable input or unwritable output found late (disk full, read-only mount)
        from core.evaluation.outputs import shown

        _fail(f"{shown(err.filename)}: {err.strerror}" if err.filename else str(err))


MAX_BOOTSTRAP = 10_000  # 95% CIs settle long before; a typo of 10**12 would otherwise never end


def _check_eval_args(run: str, output_dir: str, split: str, checkpoint: str, data_dir: Optional[str],
                     thresholds: Optional[str], sensitivity: Optional[float], bootstrap: int, device: str) -> None:
    """Every eval argument checked in well under a second, before the model build and the dataset scan."""
    from core.data.location_check import check_data_location
    from core.evaluation.outputs import probe_folder
    from core.evaluation.run_model import checkpoint_path, find_run, read_run_config, resolve_device
    from core.evaluation.scoring import SPLITS
    from core.evaluation.thresholds import METHODS

    if split not in SPLITS:
        _fail(f"split: '{split}' is not one of {', '.join(SPLITS)}")
    if thresholds is not None and thresholds not in METHODS:
        _fail(f"threshold method: '{thresholds}' is not one of {', '.join(METHODS)}")
    if sensitivity is not None and not 0.0 < sensitivity <= 1.0:
        _fail(f"--sensitivity: must be in (0, 1] (got {sensitivity})")
    if bootstrap > MAX_BOOTSTRAP:
        _fail(f"--bootstrap: at most {MAX_BOOTSTRAP} resamples (got {bootstrap})")
    resolve_device(device)
    run_dir = find_run(run, output_dir)
    checkpoint_path(run_dir, checkpoint)
    cfg = read_run_config(run_dir)
    check_data_location(cfg if data_dir is None else cfg.model_copy(update={"data_dir": data_dir}))
    probe_folder(run_dir, "eval writes its report into the run folder")


def _echo_predictions(results, target: Path, limit: int = 10) -> None:
    """A short table in the terminal: file, labels and their probabilities (the rest is in the output file)."""
    from rich.console import Console
    from rich.table import Table

    from core.evaluation.outputs import shown

    table = Table(title=f"predictions (first {min(limit, len(results))} of {len(results)}; all in {shown(target)})")
    for col in ("file", "labels", "p"):  # p of each label given: a thresholded label need not be the top class
        table.add_column(col, justify="right" if col == "p" else "left", overflow="fold")
    for r in results[:limit]:
        top = " ".join(f"{r.probabilities[c]:.3f}" for c in r.labels) if r.probabilities and r.labels else "-"
        table.add_row(shown(Path(r.path).name), "|".join(r.labels) if not r.error else f"unreadable: {shown(r.error)}", top)
    Console(highlight=False, soft_wrap=False).print(table)


def eval_command(run: str = RUN,
                 split: str = typer.Option("test", "--split", help="val or test."),
                 checkpoint: str = CHECKPOINT,
                 data_dir: Optional[str] = typer.Option(None, "--data_dir", "--data-dir",
                                                        help="Dataset root, if it moved since training."),
                 thresholds: Optional[str] = typer.Option(
                     None, "--thresholds", help="Re-choose thresholds on val: youden, f1 or sensitivity "
                     "(default: the run's thresholds.json, else youden)."),
                 sensitivity: Optional[float] = typer.Option(
                     None, "--sensitivity", help="Target sensitivity, e.g. 0.95 (implies --thresholds sensitivity)."),
                 bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95% CIs "
                                         f"(at most {MAX_BOOTSTRAP})."),
                 no_plots: bool = typer.Option(False, "--no_plots", help="Skip the PNG plots."),
                 domain_probe: bool = typer.Option(False, "--domain_probe", help="Also fit a logistic regression on "
                                                   "the model's features to predict the source (cross-validated by "
                                                   "patient): how much of the source the features carry."),
                 output_dir: str = OUTPUT_DIR, device: str = DEVICE) -> None:
    """Score a split: per-class AUROC/AP/sens/spec/PPV/NPV/F1 with 95% CIs -> eval_<split>.json/.md."""
    from core.evaluation.run_model import find_run
    from core.evaluation.scoring import evaluate_run

    with _expected_errors():
        _check_eval_args(run, output_dir, split, checkpoint, data_dir, thresholds, sensitivity, bootstrap, device)
    method = "sensitivity" if sensitivity is not None and thresholds is None else thresholds
    with _expected_errors(), _EvalProgress() as progress:
        report, written = evaluate_run(find_run(run, output_dir), split, checkpoint, data_dir, method,
                                       sensitivity if sensitivity is not None else 0.95, bootstrap,
                                       not no_plots, device, progress, domain_probe=domain_probe)
    _print_eval(report, split, checkpoint)
    typer.echo(f"wrote {written['json']} and {written['md']}")


def _print_eval(report: dict, split: str, checkpoint: str) -> None:
    """Two narrow tables (decision figures; AUROC/AP with intervals) readable at 80 columns; off a
    terminal (a log file) plain text at full width, never cut to '0.9…'."""
    import sys

    from rich import box
    from rich.console import Console
    from rich.table import Table

    from core.evaluation.report import (DECISION_COLUMNS, PARTIAL_NOTE, RANK_COLUMNS, decision_line, decision_rows,
                                        has_partial, headline, rank_rows)

    tty = sys.stdout.isatty()
    console = Console(highlight=False, **({} if tty else {"width": 10_000, "no_color": True}))
    typer.echo(f"{report['run']} - {split} split ({checkpoint} checkpoint)")
    for columns, rows in ((DECISION_COLUMNS, decision_rows(report)), (RANK_COLUMNS, rank_rows(report))):
        table = Table(box=box.SIMPLE_HEAD if tty else box.ASCII2, pad_edge=False, padding=(0, 1))
        for col in columns:
            table.add_column(col, justify="left" if col == "class" else "right", no_wrap=True,
                             overflow="fold" if col == "class" else "ellipsis")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if has_partial(report):
        typer.echo(PARTIAL_NOTE)
    typer.echo(headline(report))
    typer.echo(decision_line(report))
    from core.evaluation.shortcut_report import shortcut_lines

    for line in shortcut_lines(report.get("shortcut")):
        typer.echo(line)
    if report.get("domain_probe"):
        from core.evaluation.domain_probe import probe_line

        typer.echo(probe_line(report["domain_probe"]))
    info = report["thresholds_info"]
    typer.echo(f"thresholds: {info['method']} on val ({info['checkpoint']} checkpoint); "
               "undefined = no positives (or no negatives) for that class in this split")
    if "confusion_matrix" in report:
        typer.echo("confusion matrix (rows truth, columns predicted): " + str(report["confusion_matrix"]))


class _EvalProgress(_ProgressPrinter):
    """Off a terminal, the bootstrap (once overall and once per domain) is one summary line, not dozens."""

    def __init__(self) -> None:
        super().__init__()
        self.boot: dict[str, int] = {}

    def __call__(self, done: int, total: int, desc: str) -> None:
        if self.tty or not desc.startswith("bootstrap"):
            super().__call__(done, total, desc)
        else:
            self.boot[desc] = total

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if self.boot and exc[0] is None:
            n = next(iter(self.boot.values()))
            typer.echo(f"bootstrap: {n} resamples x {len(self.boot)} (overall"
                       + (f" + {len(self.boot) - 1} domains" if len(self.boot) > 1 else "")
                       + f"), {time.perf_counter() - self.started:.0f} s")


def predict_command(run: str = RUN,
                    paths: list[str] = typer.Argument(..., help="Image files (PNG, JPEG, DICOM), folders, or csv "
                                                                "files with a path column."),
                    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: "
                                                       "<run>/predictions.csv or .json)."),
                    fmt: Optional[str] = typer.Option(None, "--format", help="csv or json (default: from the "
                                                      "--out suffix, else csv)."),
                    batch_size: int = typer.Option(32, "--batch_size", min=1),
                    tta: bool = typer.Option(False, "--tta", help="Average with rotated/cropped views inside "
                                             "training's augmentation (none if it trained without one)."),
                    cam: Optional[Path] = typer.Option(None, "--cam", help="Also write a Grad-CAM overlay PNG "
                                                       "per image (top class) into this folder."),
                    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file "
                                                   "(and --cam overlays); without it predict refuses."),
                    checkpoint: str = CHECKPOINT, output_dir: str = OUTPUT_DIR, device: str = DEVICE) -> None:
    """Probabilities and thresholded labels for new images; unreadable files are listed, not fatal.

    Never replaces an earlier output without --overwrite; exit 2 when no file could be read."""
    from core.evaluation import outputs
    from core.evaluation.explain import explain_file
    from core.evaluation.predict import FORMATS, collect_inputs, predict_paths, write_predictions
    from core.evaluation.run_model import checkpoint_path, find_run, load_run_model, resolve_device

    suffix_fmt = out.suffix.lower().lstrip(".") if out is not None else None
    fmt = fmt or (suffix_fmt if suffix_fmt in FORMATS else "csv")
    if fmt not in FORMATS:
        _fail(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    with _expected_errors():  # every argument and output checked before the model loads
        dev = resolve_device(device)
        run_dir = find_run(run, output_dir)
        checkpoint_path(run_dir, checkpoint)
        target = outputs.check_file(out or run_dir / f"predictions.{fmt}", "--out", run_dir, overwrite=overwrite)
        if cam is not None:
            outputs.check_folder(cam, "--cam")
            if outputs.protected(cam / "x.png", run_dir):
                _fail(f"--cam: {outputs.shown(cam)} is inside the run's checkpoints folder; choose another folder")
            if not overwrite and any(cam.glob("*_cam.png")):
                _fail(f"--cam: {outputs.shown(cam)} already holds overlays; pass --overwrite to replace them, "
                      "or choose another folder")
        files = collect_inputs(paths)
        if not files:
            _fail(f"no images found in {', '.join(outputs.shown(p) for p in paths)}")
        if outputs.same_file(target, [*map(Path, paths), *files]):
            _fail(f"--out: {outputs.shown(target)} is one of the inputs; choose another --out")
        rm = load_run_model(run_dir, checkpoint, dev)
        with _ProgressPrinter() as progress:
            results = predict_paths(rm, files, batch_size, tta, progress)
        bad = [r for r in results if r.error]
        if len(bad) == len(results):
            for r in bad[:20]:
                typer.echo(f"  {outputs.shown(r.path)}: {outputs.shown(r.error)}")
            _fail(f"none of the {len(results)} file(s) could be read (reasons above); nothing written")
        existed = target.is_file()
        write_predictions(results, rm.classes, target, fmt)
        if cam is not None:
            for i, r in enumerate(x for x in results if not x.error):
                overlay = cam / f"{i:05d}_{Path(r.path).stem}_cam.png"
                with outputs.atomic_path(overlay, "--cam") as tmp:
                    explain_file(rm, Path(r.path), tmp)
    _echo_predictions(results, target)
    typer.echo(f"{len(results) - len(bad)} image(s) predicted -> {outputs.shown(target)}"
               + (" (replaced the previous file: --overwrite)" if existed else ""))
    if tta:
        from core.evaluation.tta import tta_plan

        typer.echo(f"test-time augmentation: {tta_plan(rm.config.augmentation)[0]}")
    if cam is not None:
        typer.echo(f"Grad-CAM overlays in {outputs.shown(cam)}")
    if bad:
        typer.echo(f"{len(bad)} file(s) could not be read (listed in the output with the reason):")
        for r in bad[:20]:
            typer.echo(f"  {outputs.shown(r.path)}: {outputs.shown(r.error)}")


def export_command(run: str = RUN,
                   fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
                   out: Optional[Path] = typer.Option(None, "--out", help="Model file (default: <run>/export/"
                                                      "model.onnx or model.pt); the metadata goes to <file>.json."),
                   checkpoint: str = CHECKPOINT, output_dir: str = OUTPUT_DIR) -> None:
    """Export with a dynamic batch; a JSON beside it (<model file>.json) holds preprocessing, classes and thresholds."""
    from core.evaluation.export import FORMATS, export_paths, export_run
    from core.evaluation.run_model import checkpoint_path, find_run, load_run_model

    if fmt not in FORMATS:
        _fail(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    with _expected_errors():
        run_dir = find_run(run, output_dir)
        checkpoint_path(run_dir, checkpoint)
        model_file, _ = export_paths(run_dir, fmt, out)  # refused here, before the model loads
        existed = model_file.is_file()
        meta = export_run(load_run_model(run_dir, checkpoint, "cpu"), fmt, out)
    typer.echo(f"exported {meta['path']} (+ {Path(meta['metadata']).name})"
               + (" (replaced the previous export)" if existed else ""))
    typer.echo(f"parity with PyTorch on a batch of 3: max abs diff {meta['parity_max_abs_diff']:.2e}")
    if not meta["parity_ok"]:
        _fail(f"parity check failed: the exported model's probabilities differ from PyTorch's by "
              f"{meta['parity_max_abs_diff']:.2e} (> {meta['parity_tolerance']:g}); do not deploy it", code=1)


def explain_command(run: str = RUN, image: Path = typer.Argument(..., help="PNG, JPEG or DICOM file."),
                    class_name: Optional[str] = typer.Option(None, "--class", help="Class to explain "
                                                             "(default: the most probable)."),
                    out: Optional[Path] = typer.Option(None, "--out", help="Overlay PNG (default: "
                                                       "<run>/explain/<image>_<class>.png)."),
                    checkpoint: str = CHECKPOINT, output_dir: str = OUTPUT_DIR) -> None:
    """Grad-CAM heatmap of one image, saved as a PNG overlay on the X-ray."""
    from types import SimpleNamespace

    from core.data.decode import DecodeError
    from core.evaluation import outputs
    from core.evaluation.explain import class_index, explain_file
    from core.evaluation.run_model import checkpoint_path, find_run, load_run_model, run_started_record

    with _expected_errors():  # arguments first (class names from the run's RunStarted record), then the model
        run_dir = find_run(run, output_dir)
        checkpoint_path(run_dir, checkpoint)
        logged = run_started_record(run_dir).get("classes")
        if class_name is not None and isinstance(logged, list) and logged:
            class_index(SimpleNamespace(classes=[str(c) for c in logged]), class_name)
        if not image.is_file():
            _fail(f"{outputs.shown(image)}: {'not a regular file' if image.exists() else 'missing file'}")
        label = re.sub(r"[^A-Za-z0-9._-]", "_", class_name or "top")  # a class name never makes a path
        target = outputs.check_file(out or run_dir / "explain" / f"{image.stem}_{label}.png",
                                    "--out", run_dir, (".png",))
        rm = load_run_model(run_dir, checkpoint, "cpu")
        try:
            with outputs.atomic_path(target, "--out") as tmp:
                result = explain_file(rm, image, tmp, class_name)
        except DecodeError as err:
            _fail(f"{outputs.shown(err.path)}: {err.reason}")
    typer.echo(f"{result['class']} (p={result['probability']:.3f}): overlay {outputs.shown(target)}")
    if result.get("note"):
        typer.echo(f"note: {result['note']}")


def register(app: typer.Typer) -> None:
    """Mount the commands on the main CLI."""
    app.command("eval")(eval_command)
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    app.command("explain")(explain_command)
