"""`medcls advise`: GPU memory, the tips' batch for it, and optionally the measured probe.

Mounted by cli.py as `app.command("advise")(advise)`. The numbers come from core.hardware.advisor, the
same functions the TUI's advisor panel uses; this module only words and prints them.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Optional

import typer

from core.hardware.advice_table import REFERENCE_IMG


def build_config(model: str, mode: str, img_size: Optional[int], mixed_precision: bool, grad_checkpointing: bool,
                 augmentation: Optional[str], dataset: str, device: str):
    """A TrainConfig for the advisor. No data is read, so data_dir & co. are not needed here."""
    from core.config import TrainConfig
    from core.models.names import resolve_model_name

    resolve_model_name(model)  # unknown names fail with the list of aliases
    return TrainConfig(model=model, mode=mode, img_size=img_size or REFERENCE_IMG, mixed_precision=mixed_precision,
                       grad_checkpointing=grad_checkpointing, augmentation=augmentation, dataset=dataset,
                       device=device)


def advice_report(config, probe_result: Any = None) -> dict:
    """Everything `advise` knows, as plain data (the --json output)."""
    from core.hardware.advisor import read_hardware, table_advice

    hardware = read_hardware()
    table = table_advice(config.model, config.mode, config.img_size, config.mixed_precision, hardware=hardware,
                         device=config.device, grad_checkpointing=config.grad_checkpointing)
    return {
        "config": {k: getattr(config, k) for k in ("model", "mode", "img_size", "mixed_precision",
                                                   "grad_checkpointing", "augmentation", "dataset", "device")},
        "hardware": asdict(hardware),
        "table": asdict(table),
        "probe": probe_result.to_dict() if probe_result is not None else None,
    }


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape

    from core.config import tips

    console = Console(highlight=False)
    hw, table, probe, cfg = report["hardware"], report["table"], report["probe"], report["config"]
    console.print(f"[bold]Hardware[/] (source: {hw['source']})")
    for gpu in hw["gpus"]:
        console.print(f"  GPU {gpu['index']}: {escape(gpu['name'])} — {gpu['total_gib']:.1f} GiB total, "
                      f"{gpu['free_gib']:.1f} GiB free, {gpu['used_by_other_processes_gib']:.1f} GiB used by "
                      "other processes")
    if not hw["gpus"]:
        console.print("  no GPU — CPU training (mixed precision is off on CPU)")
    if hw["cpu_ram_total_gib"] is not None:
        free = hw["cpu_ram_free_gib"]
        console.print(f"  RAM {hw['cpu_ram_total_gib']:.1f} GiB total" + (f", {free:.1f} GiB available" if free else ""))
    console.print(f"\n[bold]Table advice[/] for {cfg['model']} · {cfg['mode']} · {cfg['img_size']} px · "
                  f"{table['precision']}")
    console.print(f"  spec range {table['batch_low']}-{table['batch_high']}: batch {table['suggested_batch']} x "
                  f"{table['grad_accum_steps']} accumulation = effective {table['effective_batch']}")
    for reason in table["reasons"]:
        console.print(f"    • {escape(reason)}", style="dim")
    console.print("  batches here are per GPU: with --gpus N (or torchrun) each of the N processes takes this "
                  "batch, so the global batch is N x the effective one")
    advice = list(table["model_advice"])
    if probe is not None:
        console.print(f"\n[bold]Measured probe[/] on {probe['device']} ({probe['elapsed_s']:.1f} s"
                      + (", time budget reached" if probe["timed_out"] else "") + ")")
        console.print(f"  max safe batch {probe['max_safe_batch']}"
                      + ("" if probe["max_is_measured"] else " (extrapolated)")
                      + f", recommended [bold]{probe['recommended_batch']} x {probe['grad_accum_steps']}[/] "
                      f"accumulation = effective {probe['effective_batch']}")
        extra = []
        if probe["images_per_sec"]:
            extra.append(f"~{probe['images_per_sec']:.0f} img/s")
        if probe["peak_mem_gib"] is not None:
            extra.append(f"peak {probe['peak_mem_gib']:.2f} GiB")
        extra.append(f"eval at that batch {'ok' if probe['eval_batch_ok'] else 'not confirmed'}")
        console.print("  " + ", ".join(extra))
        for reason in probe["reasons"]:
            console.print(f"    • {escape(reason)}", style="dim")
        advice = list(probe["model_advice"]) or advice
    if advice:
        console.print("\n[bold yellow]Model advice[/]")
        for line in advice:
            console.print(f"  - {escape(line)}")
    console.print("\n[bold]If you run out of memory[/] (spec: Memory Optimization)")
    for i, step in enumerate(tips.MEMORY_STEPS, 1):
        console.print(f"  {i}. {escape(step)}")
    if probe is None:
        console.print("\n(add --probe to measure on this machine)", style="dim")


def advise(
    model: str = typer.Option(..., "--model", help="Seed alias (resnet50, swin_base, ...) or a timm name."),
    mode: str = typer.Option("full_finetune", "--mode", help="linear_probe or full_finetune."),
    img_size: Optional[int] = typer.Option(None, "--img_size", "--img-size", help=f"Image size (default {REFERENCE_IMG})."),
    mixed_precision: bool = typer.Option(True, "--mixed_precision/--no_mixed_precision", help="AMP on CUDA."),
    grad_checkpointing: bool = typer.Option(False, "--grad_checkpointing", help="Trade compute for memory."),
    augmentation: Optional[str] = typer.Option(None, "--augmentation", help="e.g. xdomainmix (changes memory)."),
    dataset: str = typer.Option("synthetic", "--dataset", help="Only sets the task shape (classes, multi-label)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    probe: bool = typer.Option(False, "--probe", help="Measure: real training steps with growing batches."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of the report."),
    time_budget: float = typer.Option(60.0, "--time_budget", "--time-budget", help="Probe time limit in seconds."),
    margin: float = typer.Option(0.10, "--margin", help="Share of memory kept free by the probe."),
    max_batch: int = typer.Option(1024, "--max_batch", "--max-batch", help="Largest batch the probe tries."),
) -> None:
    """Batch size for your GPU: the tips' table, and with --probe what really fits (with a margin)."""
    from pydantic import ValidationError

    from core.config import _format_validation_error
    from core.models.names import ModelNameError

    try:
        config = build_config(model, mode, img_size, mixed_precision, grad_checkpointing, augmentation, dataset,
                              device)
    except ModelNameError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    except ValidationError as err:
        typer.echo(f"error: {_format_validation_error(err)}", err=True)
        raise typer.Exit(2)
    result = None
    if probe:
        from core.hardware.advisor import probe_batch_size

        if not json_out:
            typer.echo(f"probing {config.model} (up to {time_budget:.0f} s)...", err=True)
        try:
            result = probe_batch_size(config, time_budget_s=time_budget, margin=margin, max_batch=max_batch)
        except (RuntimeError, ValueError) as err:
            typer.echo(f"error: probe failed: {err}", err=True)
            raise typer.Exit(1)
    report = advice_report(config, result)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
