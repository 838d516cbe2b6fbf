"""`medcls compare RUN_A RUN_B ...`: is run B really better than run A, on the same split?"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli_eval import CHECKPOINT, DEVICE, OUTPUT_DIR, _EvalProgress, _expected_errors, _fail


def compare_command(runs: list[str] = typer.Argument(..., help="Two or more runs (folder or name under "
                                                     "--output_dir); a group of seeds as A1,A2,A3. The first "
                                                     "run (or group) is the reference A."),
                    split: str = typer.Option("test", "--split", help="val or test."),
                    checkpoint: str = CHECKPOINT,
                    bootstrap: int = typer.Option(1000, "--bootstrap", min=1, max=100_000,
                                                  help="Paired bootstrap resamples (same patients for every run)."),
                    out: Optional[Path] = typer.Option(None, "--out", help="Folder for compare_<split>.md/.json "
                                                       "(default: the current folder)."),
                    output_dir: str = OUTPUT_DIR, device: str = DEVICE) -> None:
    """Per-class and macro AUROC differences with paired bootstrap CIs and DeLong p-values, accuracy /
    sensitivity / specificity at each run's thresholds (McNemar), and the config keys that differ."""
    from core.evaluation.compare import compare_runs, write_comparison
    from core.evaluation.compare_report import comparison_lines
    from core.evaluation.compare_scoring import score_run
    from core.evaluation.run_model import find_run

    groups_named = [[name.strip() for name in arg.split(",") if name.strip()] for arg in runs]
    if len(groups_named) < 2 or any(not g for g in groups_named):
        _fail("compare: give at least two runs (or groups of runs like A1,A2,A3)")
    if split not in ("val", "test"):
        _fail(f"--split: '{split}' is not one of val, test")
    if checkpoint not in ("best", "last"):
        _fail(f"--checkpoint: '{checkpoint}' is not one of best, last")
    with _expected_errors():
        folders = [[find_run(name, output_dir) for name in group] for group in groups_named]
    names = [f.name for group in folders for f in group]
    if len(set(names)) != len(names):
        _fail("compare: each run once (a run named twice compares with itself)")
    with _expected_errors(), _EvalProgress() as progress:
        groups = [[score_run(folder, split, checkpoint, device, progress) for folder in group] for group in folders]
        result = compare_runs(groups, split, bootstrap, seed=0)
    for line in comparison_lines(result):
        typer.echo(line)
    written = write_comparison(result, out or Path.cwd())
    typer.echo(f"wrote {written['json']} and {written['md']}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
