"""Several processes training one run (torchrun / `medcls train --gpus N`): who am I, and the few
collectives the engine needs. In one process every helper is a no-op, so the engine calls them
unconditionally and a plain run never touches torch.distributed.

A torchrun launch is recognised from its environment (WORLD_SIZE, RANK, LOCAL_RANK). The process
group uses nccl on CUDA and gloo on CPU, with a timeout on every collective so a rank that died or
hangs ends the job with a message instead of a hang.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

if TYPE_CHECKING:  # torch is imported where used: `--print-config` reads the rank without loading it
    import numpy as np
    import torch

DEFAULT_TIMEOUT_MINUTES = 30.0


class DistributedError(RuntimeError):
    """A collective failed (another rank died, or did not answer within dist_timeout_minutes)."""


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) in a plain process."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        return int(value) if value.strip().isdigit() else default

    world = read("WORLD_SIZE", 1)
    return read("RANK", 0), max(1, world), read("LOCAL_RANK", 0)


def env_is_main() -> bool:
    """True in a plain process and on rank 0 of a torchrun job (read before any process group exists)."""
    return env_world()[0] == 0


@dataclass
class DistContext:
    """This process's place in the job. world_size 1 = a plain run (every helper is a no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    """gloo or nccl once the process group is up; None in one process."""
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES

    @classmethod
    def from_env(cls) -> "DistContext":
        rank, world, local = env_world()
        return cls(rank=rank, world_size=world, local_rank=local)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up
    def device(self, requested: str) -> torch.device:
        """The device this rank trains on: cuda:LOCAL_RANK for auto/cuda in a distributed CUDA job."""
        import torch

        from core.hardware.host import pick_device

        device = pick_device(requested)
        if self.enabled and device.type == "cuda" and requested in ("auto", "cuda"):
            device = torch.device("cuda", self.local_rank)
        return device

    def init(self, device: torch.device, timeout_minutes: float) -> "DistContext":
        """Join the process group (once); nccl on CUDA, gloo otherwise."""
        self.timeout_minutes = float(timeout_minutes)
        if not self.enabled:
            return self
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=self.backend, timeout=datetime.timedelta(minutes=self.timeout_minutes),
                                    device_id=device if device.type == "cuda" else None)
        return self

    def shutdown(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """DistributedDataParallel around the module (gradients averaged over ranks); itself in one process."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    # ------------------------------------------------------------------ collectives
    def _collective(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, ValueError) as err:  # gloo/nccl report a dead peer or a timeout as RuntimeError
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise DistributedError(
                f"rank {self.rank}/{self.world_size}: {what} failed ({first}); another rank probably died or "
                f"stalled for more than dist_timeout_minutes={self.timeout_minutes:g}. The last checkpoint is "
                "kept: resume with --retrain") from None

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or max) over ranks, in place and returned."""
        if not self.enabled:
            return tensor
        import torch.distributed as dist

        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        self._collective(f"all_reduce({op})", dist.all_reduce, tensor, op=red)
        return tensor

    def agree(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Each flag true on every rank when it is true on any (stop, pause ...): all ranks act together."""
        if not self.enabled:
            return [bool(f) for f in flags]
        import torch

        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=self.comm_device(device))
        return [bool(v) for v in self.all_reduce(t, "max").tolist()]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's object, on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        self._collective("broadcast_object", dist.broadcast_object_list, box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            self._collective("barrier", dist.barrier)

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, caches written once), then the first rank of every
        other machine (its own disk, when the data is not on a shared one), then everyone else."""
        if not self.enabled:
            yield
            return
        turn = 0 if self.is_main else (1 if self.local_rank == 0 else 2)
        for current in range(3):
            if current == turn:
                yield
            self.barrier()

    def gather_rows(self, local: torch.Tensor, sizes: Sequence[int], device: torch.device) -> torch.Tensor:
        """Concatenate each rank's rows in rank order. Shards may differ in length (sizes[r] rows on rank
        r): each is padded to the longest for all_gather and the padding is dropped again, so the result
        is exactly the unsharded tensor."""
        if not self.enabled:
            return local
        import torch
        import torch.distributed as dist

        longest = max(sizes)
        comm = self.comm_device(device)
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=comm)
        padded[: local.shape[0]] = local.to(comm)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._collective("all_gather", dist.all_gather, parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)]).to(local.device)

    def comm_device(self, device: torch.device) -> torch.device:
        """Where collective tensors live: the GPU for nccl, host memory for gloo."""
        import torch

        return device if self.backend == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------------- sharding
def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous [start, stop) of n items for this rank; lengths differ by at most one."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_sizes(n: int, world: int) -> list[int]:
    return [b - a for a, b in (shard_bounds(n, r, world) for r in range(world))]


def shard_batches(global_batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's part of every global batch of the epoch's seeded permutation.

    Every rank builds the same global batches (per-rank batch x world, from the same (seed, epoch)
    permutation), and takes a contiguous slice of each: a full batch splits into equal per-rank
    batches, so the ranks together see exactly the samples one process with the global batch sees,
    step for step, and the position in the epoch (optimizer steps) means the same on every rank,
    which is what makes `--retrain` resume at the same sample. A global batch with fewer samples
    than ranks is repeated until each rank has one (no rank may step with an empty batch)."""
    if world == 1:
        return global_batches
    out = []
    for batch in global_batches:
        items = list(batch)
        while len(items) < world:
            items += list(batch)[: world - len(items)]
        a, b = shard_bounds(len(items), rank, world)
        out.append(items[a:b])
    return out


def val_shard(n: int, rank: int, world: int) -> np.ndarray:
    """Indices of the validation split this rank scores (contiguous, so gathering restores the order)."""
    import numpy as np

    a, b = shard_bounds(n, rank, world)
    return np.arange(a, b)
