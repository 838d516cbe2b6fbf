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
    import core.training.validation as engine  # validation scores the val split
    from core.training.trainer import Trainer
    from core.config.resolve import resolve_config

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


def gather_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of a gloo job with no engine (torch only, so it starts fast): its shard of fixed logits
    gathered, and the agreed flags."""
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch

    torch.set_num_threads(1)
    from core.training.distributed import DistContext, shard_sizes, val_shard

    dist = DistContext.from_env().init(torch.device("cpu"), timeout_minutes=10)
    try:
        logits, targets = fixed_predictions()
        mine = val_shard(len(targets), rank, world)
        sizes = shard_sizes(len(targets), world)
        all_logits = dist.gather_rows(logits[mine], sizes, torch.device("cpu"))
        all_targets = dist.gather_rows(targets[mine], sizes, torch.device("cpu"))
        stop_on_rank1 = dist.agree([rank == 1, False], torch.device("cpu"))
        torch.save({"logits": all_logits, "targets": all_targets, "agreed": stop_on_rank1},
                   Path(out_dir, f"gather{rank}.pt"))
    finally:
        dist.shutdown()


def fixed_predictions():
    """Eleven val predictions (odd: the shards are uneven) for three classes."""
    import torch

    g = torch.Generator().manual_seed(3)
    return torch.randn(11, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 0])
