"""Flags + preset/config/--retrain -> the resolved config of a run: shared by the CLI and the app.

No UI library here, so both faces import it and neither imports the other.
"""
from __future__ import annotations

from typing import Any


def resolve_from_cli(flags: dict[str, Any], extras: dict[str, Any]):
    """Flags + preset/config/retrain -> (ResolvedConfig, resume_dir or None). ConfigError on bad input."""
    from core.config import ConfigError, load_yaml_file
    from core.config.resolve import resolve_config
    from core.runs.folder import RunError, check_output_dir, find_run_dir

    resume_dir = None
    base = None
    if extras.get("retrain"):
        try:
            resume_dir = find_run_dir(extras["retrain"], flags.get("output_dir", "runs"))
        except RunError as err:
            raise ConfigError(str(err)) from None
        from core.runs.lock import RunLockedError, check_not_locked

        from core.training.distributed import env_is_main

        try:
            if env_is_main():  # in a torchrun job rank 0 takes the lock; the other ranks must not trip on it
                check_not_locked(resume_dir)  # before any slow set-up: the second writer hears at once
        except RunLockedError as err:
            raise ConfigError(str(err)) from None
        data = load_yaml_file(resume_dir / "config.yaml") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{resume_dir / 'config.yaml'}: expected a YAML mapping of config keys, "
                              f"got {type(data).__name__}")
        base = {k: v for k, v in data.items() if k not in ("name", "description", "notes", "group", "tags")}
    resolved = resolve_config(flags, preset=extras.get("preset"), config_file=extras.get("config_file"), base=base)
    try:
        check_output_dir(resolved.config.output_dir)
    except RunError as err:
        raise ConfigError(str(err)) from None
    return resolved, resume_dir
