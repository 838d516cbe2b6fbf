"""summary.json's content: what a run did, read off the Trainer's state at the end (or at a failure,
when parts of it were never built)."""
from __future__ import annotations

import math
from typing import Optional

SCORING_SKIPPED = {"test_scoring": "skipped: stopped while scoring the test split; the run and its checkpoints "
                                   "are complete, `medcls eval <run>` scores it"}


def run_summary(t, elapsed: float, error: Optional[str]) -> dict:
    """Trainer `t`'s summary; fields of parts that were never built (a failed set-up) are None."""
    m = t.last_metrics
    built = hasattr(t, "parts")
    early = t.early if built else None
    summary = {
        "status": t.status,
        "run_name": t.run_dir.name,
        "model": t.cfg.model,
        "timm_model": getattr(t, "timm_name", None),
        "mode": t.cfg.mode,
        "dataset": t.cfg.dataset,
        "epochs_completed": t.pos.epoch,
        "epochs": t.cfg.epochs,
        "global_step": t.pos.global_step,
        "best_epoch": early.best_epoch if early else None,
        "monitor": early.monitor if early else t.cfg.monitor,
        "best_value": early.best_value if early else None,
        "val_loss": m.get("val_loss"),
        "val_auroc": m.get("val_auroc"),
        "val_acc": m.get("val_acc"),
        "val_auroc_per_class": m.get("val_auroc_per_class", {}),
        "val_auroc_excluded": m.get("val_auroc_excluded", {}),
        "train_loss": m.get("train_loss"),
        "batch_size": t.batch_size if built else None,
        "micro_batch": math.ceil(t.batch_size / t.micro_splits) if built else None,
        "effective_batch": t.global_batch * t.cfg.grad_accum_steps if built else None,
        "world_size": t.dist.world_size,
        "skipped_images": len(t.bundle.skipped) if built else 0,
        "elapsed_s": round(elapsed, 2),
        "stop_reason": t.stop_reason or (early.reason if early else ""),
        "nonfinite_steps_skipped": t.guard.skipped_total if built else 0,
    }
    summary.update(t.test_figures)
    if error:
        summary["error"] = error
    return summary
