"""The optimizer step: gradient accumulation over loader batches, DDP gradient sync on the last
micro-batch only, the finiteness check before stepping, and the out-of-memory re-split.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Optional

import torch
from torch import nn

from core.training.oom import is_oom, release_cached_memory
from core.training.precision import autocast
from core.training.val_metrics import batch_correct

FaultHook = Callable[[int, int], None]
"""fault_hook(global_step, micro_batch_size): tests raise an OOM here to exercise recovery."""
WarnFn = Callable[[str, str], None]


class OptimizerStep:
    """One optimizer step per call. `micro_splits` (how many pieces each loader batch is cut into after
    an OOM) is part of the run's state: checkpoints keep it, so a resumed run does not OOM again."""

    def __init__(self, parts, device: torch.device, dist, batch_size: int, grad_accum_steps: int, warn: WarnFn,
                 fault_hook: Optional[FaultHook] = None):
        self.optimizer = parts.optimizer
        self.scaler: torch.amp.GradScaler = parts.scaler
        self.strategy = parts.strategy
        self.criterion = parts.criterion
        self.normalize = parts.normalize
        self.amp_dtype = parts.amp_dtype
        self.multi_label = parts.multi_label
        self.cache_features = parts.cache_features
        self.device = device
        self.dist = dist
        self.batch_size = batch_size
        self.grad_accum_steps = grad_accum_steps
        self.warn = warn
        self.fault_hook = fault_hook
        self.micro_splits = 1

    def __call__(self, micro_batches: list, model_fn: nn.Module, global_step: int) -> tuple[float, float, int, bool]:
        """Returns (loss sum, correct, seen, finite). A non-finite step was skipped (see `accumulate`)."""
        n_total = sum(int(b[1].shape[0]) for b in micro_batches)
        while True:
            try:
                return self.accumulate(micro_batches, model_fn, n_total, global_step)
            except Exception as err:  # noqa: BLE001 - only OOM is handled, everything else re-raised
                if not is_oom(err):
                    raise
                if self.dist.enabled:  # a re-split on one rank would desynchronise the others' collectives
                    raise RuntimeError(f"out of memory on rank {self.dist.rank} at per-rank batch {self.batch_size}: "
                                       "distributed runs do not re-split the batch; lower --batch_size (per GPU) "
                                       "or raise --grad_accum_steps") from err
                largest = max(int(b[1].shape[0]) for b in micro_batches)
                chunk = math.ceil(largest / self.micro_splits)
                if chunk <= 1:
                    raise RuntimeError(
                        "CUDA out of memory even at micro-batch 1. Try --grad_checkpointing, a lower --img_size, "
                        "--mode linear_probe or a smaller model (see `medcls advise`)") from err
            # outside the except block, so the failed step's frames no longer hold its activations
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():  # an OOM inside scaler.step leaves it marked "unscaled"
                state = self.scaler.state_dict()
                self.scaler = torch.amp.GradScaler(self.device.type)
                self.scaler.load_state_dict(state)
            self.micro_splits *= 2
            release_cached_memory()
            new_chunk = math.ceil(largest / self.micro_splits)
            self.warn("oom", f"out of memory at micro-batch {chunk}: retrying with micro-batch {new_chunk} "
                             f"x {self.micro_splits * self.grad_accum_steps} accumulation "
                             f"(same effective batch {self.batch_size * self.grad_accum_steps})")

    def accumulate(self, micro_batches, model_fn, n_total, global_step) -> tuple[float, float, int, bool]:
        """Forward/backward over the micro-batches, then the optimizer step only if the loss and the
        gradients are finite. Losses, accuracy and the gradient check stay on the device and are read
        in one host sync per optimizer step. Returns (loss sum, correct, seen, finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.strategy.begin_step()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        for i, (images, targets, domains) in enumerate(micro_batches):
            for x, y, d in zip(images.tensor_split(self.micro_splits), targets.tensor_split(self.micro_splits),
                               domains.tensor_split(self.micro_splits)):
                if y.shape[0] == 0:
                    continue
                if self.fault_hook is not None:
                    self.fault_hook(global_step, int(y.shape[0]))
                x = x if self.cache_features else self.normalize(x)
                y = y.to(self.device, non_blocking=True)
                d = d.to(self.device, non_blocking=True)
                with autocast(self.device, self.amp_dtype), grad_sync(model_fn, last=i == len(micro_batches) - 1):
                    loss, logits = self.strategy.training_loss(model_fn, self.criterion, x, y, d, global_step)
                weight = y.shape[0] / n_total
                self.scaler.scale(loss * weight).backward()
                loss_sum += loss.detach().float() * y.shape[0]
                hits = batch_correct(logits.detach(), y, self.multi_label)
                if hits is not None:
                    correct += hits
                seen += int(y.shape[0])
        # With fp16 the GradScaler checks the (scaled) gradients itself and skips an overflowing step;
        # otherwise a non-finite gradient norm (any NaN/inf element) means the step must not be taken.
        grad_check = torch.zeros((), device=self.device) if self.scaler.is_enabled() else self.grad_norm_sum()
        # summed over ranks: every rank logs the global loss and takes (or skips) the step together
        stats = torch.stack([loss_sum, correct.float(), grad_check.float(), loss_sum.new_tensor(float(seen))])
        loss_total, correct_total, grad_total, seen_total = self.dist.all_reduce(stats).tolist()
        seen = int(seen_total)
        finite = math.isfinite(loss_total) and math.isfinite(grad_total)
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
            with autocast(self.device, self.amp_dtype):
                self.strategy.after_optimizer_step(model_fn)
        else:
            self.optimizer.zero_grad(set_to_none=True)  # the step is skipped: weights and optimizer state unchanged
        return loss_total, correct_total, seen, finite

    def grad_norm_sum(self) -> torch.Tensor:
        """Sum of per-tensor gradient norms: finite exactly when every gradient element is (a device tensor)."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.stack(torch._foreach_norm(grads)).float().sum()


def grad_sync(model_fn: nn.Module, last: bool):
    """DDP all-reduces gradients in the backward of a forward run outside no_sync(): with gradient
    accumulation only the last micro-batch's (the sum is the same, the traffic 1/accum)."""
    no_sync = getattr(model_fn, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()
