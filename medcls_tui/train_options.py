"""Typer options generated from TrainConfig, so every config key is a flag spelled as in the spec
(`--mixed_precision/--no_mixed_precision`, `--early_stopping 10`, ...) and the CLI never drifts
from the config schema. Every option defaults to None = "not given" (tips and presets fill it).
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Optional

import typer

from core.config import TrainConfig

# Options that are not config keys.
EXTRA_OPTIONS = {
    "preset": (Optional[str], typer.Option(None, "--preset", help="Preset name (medcls presets list) or a preset .yaml file.")),
    "config_file": (Optional[str], typer.Option(None, "--config", help="YAML config in the spec's shape (e.g. full_finetune: {layer_decay: 0.65}).")),
    "retrain": (Optional[str], typer.Option(None, "--retrain", help="Resume a run folder (path or name under --output_dir) exactly where it stopped.")),
    "gpus": (Optional[int], typer.Option(None, "--gpus", help="Train with N processes on this machine (one per GPU; with --device cpu, N CPU processes) through torch.distributed.run; torchrun -m medcls_tui train ... does the same on several machines.")),
    "repeat": (Optional[int], typer.Option(None, "--repeat", min=1, help="Train the same config N times with seeds seed, seed+1, ... into sibling run folders <name>-seed<S> (for `medcls compare`).")),
    "seeds": (Optional[str], typer.Option(None, "--seeds", help="Train the same config once per seed, e.g. 1,2,3, into sibling run folders <name>-seed<S>.")),
    "print_config": (bool, typer.Option(False, "--print-config", "--print_config", help="Print the resolved config with the source of every value, then exit.")),
}


def _base_type(annotation: Any) -> Any:
    """Optional[X] -> X; Literal/Union -> str (pydantic validates and words the error)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union:
        if len(args) == 1:
            return _base_type(args[0])
        return str
    if origin is typing.Literal:
        return str
    return annotation


def config_options() -> list[inspect.Parameter]:
    params = []
    for name, info in TrainConfig.model_fields.items():
        base = _base_type(info.annotation)
        doc = " ".join((info.description or "").split())  # the whole docstring, on one line
        if base is bool:
            option = typer.Option(None, f"--{name}/--no_{name}", help=doc, show_default=False)
            annotation = Optional[bool]
        else:
            names = [f"--{name}"]
            if "_" in name:
                names.append(f"--{name.replace('_', '-')}")
            option = typer.Option(None, *names, help=doc, show_default=False)
            annotation = Optional[base]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def with_train_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give `fn(**kwargs)` a signature with every config flag plus the extra options."""
    params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
              for n, (ann, opt) in EXTRA_OPTIONS.items()]
    params += config_options()
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config flags given on the command line, extra options)."""
    extras = {k: kwargs.pop(k) for k in list(EXTRA_OPTIONS) if k in kwargs}
    flags = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(flags.get("batch_size"), str) and flags["batch_size"].isdigit():
        flags["batch_size"] = int(flags["batch_size"])
    return flags, extras
