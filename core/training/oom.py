"""Out-of-memory recognition and the cached-memory release, shared by the Trainer and the batch probe.

A leaf module (imports only torch) so the hardware probe can use it without importing the Trainer.
"""
from __future__ import annotations

import torch


def is_oom(err: BaseException) -> bool:
    """A CUDA out-of-memory error, in either of the forms torch raises it (not an illegal access)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower() and "illegal" not in str(err).lower()


def release_cached_memory() -> None:
    """Give the allocator's cached blocks back after an OOM, so the retry starts from free memory."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
