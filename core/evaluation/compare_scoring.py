"""Score a run for `medcls compare`: its best (or last) checkpoint's probabilities on a split, its
thresholds for that checkpoint (chosen on val when missing) and its config."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from core.config import load_yaml_file
from core.evaluation import thresholds as thr
from core.evaluation.compare import ScoredRun
from core.evaluation.run_model import ProgressFn, RunModelError, checkpoint_path, load_run_model, predict_table
from core.evaluation.scoring import ensure_thresholds, split_table
from core.runs.folder import CONFIG_FILE


def score_run(run_dir: Path, split: str = "test", checkpoint: str = "best", device: str = "cpu",
              progress: Optional[ProgressFn] = None) -> ScoredRun:
    from core.data import load_dataset

    progress = progress or (lambda d, t, desc: None)
    rm = load_run_model(run_dir, checkpoint, device)
    bundle = load_dataset(rm.config, progress)
    if list(bundle.classes) != list(rm.classes):
        raise RunModelError(f"{run_dir.name}: the dataset's classes {bundle.classes} differ from the run's {rm.classes}")
    table = split_table(bundle, split)
    batch = int(rm.config.batch_size) if isinstance(rm.config.batch_size, int) else 64

    def probs(tab, what: str) -> np.ndarray:
        return predict_table(rm.model, rm.normalize, tab, rm.multi_label, batch, 0, False, progress,
                             f"{run_dir.name}: {what}", amp_dtype=rm.amp_dtype)

    digest = thr.checkpoint_digest(checkpoint_path(rm.run_dir, checkpoint))
    stored = ensure_thresholds(rm.run_dir, lambda: probs(bundle.val, "thresholds on val"), bundle, None, 0.95,
                               checkpoint, digest)
    config = load_yaml_file(Path(run_dir) / CONFIG_FILE) or {}
    return ScoredRun(name=Path(run_dir).name, classes=list(bundle.classes), multi_label=bundle.multi_label,
                     ids=list(table.ids), patients=table.patients, targets=np.asarray(table.targets),
                     probs=probs(table, f"scoring {split}"), thresholds=thr.as_list(stored, bundle.classes),
                     config=config if isinstance(config, dict) else {})
