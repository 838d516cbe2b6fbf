"""Code run inside the rank processes of tests/test_distributed.py (spawned, so it must be importable)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def evaluate_rank(rank: int, world: int, port: int, flags: dict, out_dir: str) -> None:
    """One rank of a gloo job: set up the engine as torchrun would, score the val split, write what it saw."""
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch

    torch.set_num_threads(1)
    import core.engine as engine
    from core.engine import Trainer
    from core.resolve import resolve_config

    scored = {}
    original = engine.classification_metrics

    def recording(logits, targets, *args, **kwargs):  # what the metrics were computed on, after the gather
        scored.update(logits=logits.clone(), targets=targets.clone())
        return original(logits, targets, *args, **kwargs)

    engine.classification_metrics = recording
    trainer = Trainer(resolve_config(flags, vram_gib=None))
    try:
        trainer._setup()
        metrics = trainer.evaluate(trainer.val_ds)
        torch.save(scored, Path(out_dir, f"rank{rank}.pt"))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "world": trainer.dist.world_size, "backend": trainer.dist.backend, "n_val": len(trainer.val_ds)}))
    finally:
        trainer.dist.shutdown()
