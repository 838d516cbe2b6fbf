"""`medcls data stats` and `medcls prepare`: look at a dataset and build its pixel cache up front.

Preparing before training matters for large sets (NIH: 112k PNGs decode once, minutes, then
every epoch reads the cache). Both commands take the data flags of `medcls train`, spelled the
same way, and build a TrainConfig from what was given.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Optional

import typer

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True, add_completion=False)

DEFAULT_IMG_SIZE = 224


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _config(**given: Any):
    """TrainConfig from the flags actually given (None = not given)."""
    from core.config import ConfigError, TrainConfig, validate_layer

    values = {k: v for k, v in given.items() if v is not None}
    values.setdefault("img_size", DEFAULT_IMG_SIZE)
    try:
        return TrainConfig(**validate_layer(values, "flags"))
    except ConfigError as err:
        _fail(str(err))


class _ProgressPrinter:
    """ProgressFn drawing a rich bar on a terminal, and a plain line per ~10% otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.bar = None
        self.task = None
        self.desc = None
        self.last_pct = -1
        self.started = time.perf_counter()

    def __enter__(self) -> "_ProgressPrinter":
        if self.tty:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn())
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, done: int, total: int, desc: str) -> None:
        if self.bar is not None:
            if self.task is None or desc != self.desc:
                self.task = self.bar.add_task(desc, total=max(total, 1))
                self.desc = desc
            self.bar.update(self.task, completed=done, total=max(total, 1))
            return
        pct = int(100 * done / total) if total else 100
        if desc != self.desc or pct >= self.last_pct + 10 or done == total:
            if desc != self.desc or pct != self.last_pct:
                typer.echo(f"{desc}: {done}/{total} ({pct}%, {time.perf_counter() - self.started:.0f} s)")
            self.desc, self.last_pct = desc, pct


def _load(config, cache: bool, progress: Callable[[int, int, str], None]):
    from core.data import DataError, load_dataset
    from core.data.records import load_labels_only

    try:
        return load_dataset(config, progress) if cache else load_labels_only(config, progress)
    except DataError as err:
        _fail(str(err))


def _print_stats(bundle, as_json: bool) -> None:
    from core.data.stats import compute_stats, format_stats

    from core.evaluation.shortcut import association_lines, split_associations

    stats = compute_stats(bundle)
    stats["source_vs_label"] = split_associations(bundle)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    for line in format_stats(stats) + association_lines(stats["source_vs_label"]):
        typer.echo(line)


DATASET = typer.Option("synthetic", "--dataset", help="synthetic, folder, csv, nih, covidx, vinbigdata.")
DATA_DIR = typer.Option(None, "--data_dir", "--data-dir", help="Root folder of the dataset as downloaded.")
CSV = typer.Option(None, "--csv", help="Label table for --dataset csv.")
LABEL_FILE = typer.Option(None, "--label_file", "--label-file", help="Override of the dataset's label file.")
MULTI_LABEL = typer.Option(None, "--multi_label/--no_multi_label", help="Multi-label task (default: the dataset's own).",
                           show_default=False)
IMG_SIZE = typer.Option(None, "--img_size", "--img-size", help=f"Cache resolution (default {DEFAULT_IMG_SIZE}).")
VAL_FRACTION = typer.Option(None, "--val_fraction", "--val-fraction", help="Share of patients held out for validation.")
VIN_CONSENSUS = typer.Option(None, "--vin_consensus", "--vin-consensus", help="VinBigData: any or majority.")
CACHE_DIR = typer.Option(None, "--cache_dir", "--cache-dir", help="Where the pixel cache lives.")
SEED = typer.Option(None, "--seed", help="Seed of the validation split.")
CONFOUND = typer.Option(None, "--synthetic_confound", help="Phantoms: share of images whose scanner is set by the label.")


@data_app.command("stats")
def stats_command(dataset: str = DATASET, data_dir: Optional[str] = DATA_DIR, csv: Optional[str] = CSV,
                  label_file: Optional[str] = LABEL_FILE, multi_label: Optional[bool] = MULTI_LABEL,
                  img_size: Optional[int] = IMG_SIZE, val_fraction: Optional[float] = VAL_FRACTION,
                  vin_consensus: Optional[str] = VIN_CONSENSUS, cache_dir: Optional[str] = CACHE_DIR,
                  seed: Optional[int] = SEED, synthetic_confound: Optional[float] = CONFOUND,
                  decode: bool = typer.Option(False, "--decode", help="Also decode (build the cache) to count "
                                              "undecodable images; default reads labels and checks files exist."),
                  as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON.")) -> None:
    """Images per split, class and domain, with leakage and domain-confound warnings."""
    config = _config(dataset=dataset, data_dir=data_dir, csv=csv, label_file=label_file, multi_label=multi_label,
                     img_size=img_size, val_fraction=val_fraction, vin_consensus=vin_consensus,
                     cache_dir=cache_dir, seed=seed, synthetic_confound=synthetic_confound)
    with _ProgressPrinter() as progress:
        bundle = _load(config, cache=decode, progress=progress)
    _print_stats(bundle, as_json)


def prepare_command(dataset: str = DATASET, data_dir: Optional[str] = DATA_DIR, csv: Optional[str] = CSV,
                    label_file: Optional[str] = LABEL_FILE, multi_label: Optional[bool] = MULTI_LABEL,
                    img_size: Optional[int] = IMG_SIZE, val_fraction: Optional[float] = VAL_FRACTION,
                    vin_consensus: Optional[str] = VIN_CONSENSUS, cache_dir: Optional[str] = CACHE_DIR,
                    seed: Optional[int] = SEED) -> None:
    """Decode every image once into the resized pixel cache (training then starts at once)."""
    config = _config(dataset=dataset, data_dir=data_dir, csv=csv, label_file=label_file, multi_label=multi_label,
                     img_size=img_size, val_fraction=val_fraction, vin_consensus=vin_consensus,
                     cache_dir=cache_dir, seed=seed)
    started = time.perf_counter()
    with _ProgressPrinter() as progress:
        bundle = _load(config, cache=True, progress=progress)
    _print_stats(bundle, as_json=False)
    typer.echo(f"prepared {config.dataset} at {config.img_size}px in {time.perf_counter() - started:.1f} s; "
               f"{len(bundle.skipped)} image(s) skipped")
    for name, reason in bundle.skipped[:10]:
        typer.echo(f"  skipped {name}: {reason}")
    if len(bundle.skipped) > 10:
        typer.echo(f"  ... {len(bundle.skipped) - 10} more")
