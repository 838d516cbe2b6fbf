"""`medcls train --repeat N` / `--seeds 1,2,3`: the same config once per seed, one run after the other,
into sibling run folders named by seed, so `medcls compare A1,A2,A3 B1,B2,B3` can take the group."""
from __future__ import annotations

from typing import Any, Callable, Optional


def parse_seeds(repeat: Optional[int], seeds: Optional[str], first_seed: int) -> list[int]:
    """--seeds wins; --repeat N counts up from the config's seed. ValueError names the bad part."""
    if seeds is not None:
        parts = [s.strip() for s in seeds.split(",") if s.strip()]
        if not parts or not all(s.isdigit() for s in parts):
            raise ValueError(f"--seeds: expected whole numbers separated by commas, e.g. 1,2,3 (got {seeds!r})")
        values = [int(s) for s in parts]
        if len(set(values)) != len(values):
            raise ValueError(f"--seeds: each seed once (got {seeds!r})")
        return values
    return [first_seed + i for i in range(int(repeat or 1))]


def seeded_runs(flags: dict[str, Any], base_name: str, seeds: list[int],
                data_seed: int) -> list[tuple[int, dict[str, Any]]]:
    """(seed, the flags of that run): the user's flags with the seed and the run name set, and the data
    seed held at `data_seed`, so every run splits (and, for the phantoms, draws) the same images."""
    return [(seed, {**flags, "seed": seed, "data_seed": data_seed, "run_name": f"{base_name}-seed{seed}"})
            for seed in seeds]


def train_each(runs: list[tuple[int, dict[str, Any]]], train_one: Callable[[dict[str, Any]], dict],
               say: Callable[[str], None]) -> list[dict]:
    """Train the runs in order; a run that did not finish (stopped by Ctrl-C, failed) ends the sequence,
    and the runs already finished stay as they are."""
    summaries = []
    for k, (seed, flags) in enumerate(runs, start=1):
        say(f"seed {seed} ({k} of {len(runs)}): run {flags['run_name']}")
        summary = train_one(flags)
        summaries.append(summary)
        if summary.get("status") not in ("finished", "early_stopped"):
            left = len(runs) - k
            if left:
                say(f"run {flags['run_name']} ended {summary.get('status')}: the {left} remaining seed(s) not trained")
            break
    return summaries
