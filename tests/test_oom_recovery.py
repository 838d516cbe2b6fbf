"""Run-time OOM safety (core/training/trainer.py): an out-of-memory error in a training step halves the
micro-batch, doubles accumulation (same effective batch), warns and continues; at micro-batch 1
the run stops with a clear message. OOM is injected with Trainer(fault_hook=...)."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

from core.training.trainer import Trainer
from core.events import TrainingWarning
from core.config.resolve import resolve_config


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class InjectOOM:
    """Raise CUDA OOM while the micro-batch is larger than `fits`, from global step `at_step` on."""

    def __init__(self, at_step: int, fits: int, error=None):
        self.at_step, self.fits = at_step, fits
        self.error = error or (lambda n: torch.cuda.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate {n * 64} MiB (injected)"))
        self.seen: dict[int, list[int]] = defaultdict(list)
        """global step -> micro-batch sizes that ran (after the hook let them through)."""
        self.raised = 0

    def __call__(self, global_step: int, micro_batch: int) -> None:
        if global_step >= self.at_step and micro_batch > self.fits:
            self.raised += 1
            raise self.error(micro_batch)
        self.seen[global_step].append(micro_batch)


FAST_MODEL = {"model": "test_resnet"}  # timm's 0.4M-parameter ResNet: the OOM path does not depend on size


def train(flags, hook):
    events = []
    flags = {**FAST_MODEL, **flags} if flags.get("model") == "resnet18" else flags
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, fault_hook=hook)
    return trainer, trainer.fit(), events


def oom_warnings(events):
    return [e for e in events if isinstance(e, TrainingWarning) and e.kind == "oom"]


def test_oom_halves_micro_batch_and_keeps_effective_batch(tiny_flags):
    hook = InjectOOM(at_step=2, fits=8)
    trainer, summary, events = train(tiny_flags, hook)
    assert summary["status"] == "finished", summary.get("error")
    assert summary["global_step"] == trainer.total_steps  # training went on to the end
    assert (summary["batch_size"], summary["micro_batch"], summary["effective_batch"]) == (16, 8, 16)
    assert trainer.micro_splits == 2 and hook.raised == 1
    # before the OOM: one micro-batch of 16; from step 2 on: two of 8, the same 16 images per step
    assert hook.seen[0] == [16] and hook.seen[1] == [16]
    assert all(hook.seen[s] == [8, 8] for s in range(2, trainer.total_steps))
    (warning,) = oom_warnings(events)
    assert "micro-batch 16" in warning.message and "micro-batch 8" in warning.message
    assert "same effective batch 16" in warning.message
    logged = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "oom" for r in logged)  # the warning is in the run's log too
    saved = json.loads((trainer.run_dir / "summary.json").read_text())
    assert (saved["micro_batch"], saved["effective_batch"]) == (8, 16)


def test_oom_with_accumulation_keeps_effective_batch(tiny_flags):
    flags = {**tiny_flags, "grad_accum_steps": 2}
    hook = InjectOOM(at_step=1, fits=4)
    trainer, summary, events = train(flags, hook)
    assert summary["status"] == "finished", summary.get("error")
    assert (summary["micro_batch"], summary["effective_batch"]) == (4, 32)
    assert len(oom_warnings(events)) == 2  # 16 -> 8 -> 4
    assert "x 8 accumulation" in oom_warnings(events)[-1].message  # 4 micro-batches x 2 loader batches
    assert all(sum(hook.seen[s]) == 32 for s in range(1, trainer.total_steps))


def test_plain_runtime_error_out_of_memory_is_recovered_too(tiny_flags):
    hook = InjectOOM(at_step=1, fits=8, error=lambda n: RuntimeError("CUDA error: out of memory"))
    _, summary, events = train({**tiny_flags, "epochs": 1}, hook)
    assert summary["status"] == "finished" and len(oom_warnings(events)) == 1


def test_gives_up_with_a_clear_message_at_micro_batch_one(tiny_flags):
    hook = InjectOOM(at_step=1, fits=0)
    trainer, summary, events = train(tiny_flags, hook)
    assert summary["status"] == "failed"
    assert "out of memory even at micro-batch 1" in summary["error"]
    assert "--grad_checkpointing" in summary["error"] and "medcls advise" in summary["error"]
    assert [w.message.split(":")[0] for w in oom_warnings(events)] == [
        f"out of memory at micro-batch {n}" for n in (16, 8, 4, 2)]
    assert summary["global_step"] == 1  # step 0 trained, then it stopped


def test_illegal_memory_access_is_not_retried(tiny_flags):
    hook = InjectOOM(at_step=1, fits=0, error=lambda n: RuntimeError(
        "CUDA error: an illegal memory access was encountered (out of memory?)"))
    _, summary, events = train({**tiny_flags, "epochs": 1}, hook)
    assert summary["status"] == "failed" and "illegal memory access" in summary["error"]
    assert not oom_warnings(events)


def test_oom_in_optimizer_step_with_fp16_scaler_keeps_the_update(tiny_flags, monkeypatch):
    """fp16 runs use a GradScaler. Simulated on CPU with an enabled CPU GradScaler and a model
    with LayerNorm only and no drop path, so micro-batch halving alone does not change the update."""
    import core.training.components as engine

    real_scaler = torch.amp.GradScaler
    monkeypatch.setattr(engine.torch.amp, "GradScaler",
                        lambda *a, **k: real_scaler("cpu", init_scale=1024.0, growth_interval=10**6))
    real_build = engine.build_optimizer
    flags = {**tiny_flags, "model": "test_convnext", "drop_path_rate": 0.0, "epochs": 1, "lr": 1e-3,
             "max_steps_per_epoch": 3}

    def run(fail_at_step):
        calls = {"n": 0}

        def build(*a, **k):
            opt = real_build(*a, **k)
            step = opt.step

            def flaky_step(*sa, **sk):
                calls["n"] += 1
                if calls["n"] == fail_at_step:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected in optimizer.step)")
                return step(*sa, **sk)

            opt.step = flaky_step
            return opt

        monkeypatch.setattr(engine, "build_optimizer", build)
        trainer, summary, _ = train(flags, None)
        assert summary["status"] == "finished", summary.get("error")
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    clean, recovered = run(fail_at_step=0), run(fail_at_step=2)
    assert all(torch.allclose(clean[k], recovered[k], atol=1e-4) for k in clean)


# ------------------------------------------------------------------ forward-only passes
def evaluate_with(flags, eval_hook):
    events = []
    trainer = Trainer(resolve_config(flags, vram_gib=None), on_event=events.append, eval_fault_hook=eval_hook)
    return trainer, trainer.fit(), events


def test_oom_in_evaluation_splits_the_eval_batch_and_gives_the_same_metrics(tiny_flags):
    flags = {**tiny_flags, **FAST_MODEL, "epochs": 1}
    _, clean, _ = evaluate_with(flags, None)
    hook = InjectOOM(at_step=0, fits=4)
    trainer, summary, events = evaluate_with({**flags, "run_name": "evaluated_in_pieces"}, hook)
    assert summary["status"] == "finished", summary.get("error")
    assert trainer.eval_splits == 4 and trainer.micro_splits == 1  # training batches untouched
    assert max(max(sizes) for sizes in hook.seen.values()) <= 4
    first_val_batch = min(16, len(trainer.val_ds))
    assert [w.message.split(" (")[0] for w in oom_warnings(events)] == [
        f"out of memory evaluating batches of {first_val_batch}: evaluating in batches of {-(-first_val_batch // 2)}",
        f"out of memory evaluating batches of {-(-first_val_batch // 2)}: evaluating in batches of "
        f"{-(-first_val_batch // 4)}"]
    assert summary["val_loss"] == pytest.approx(clean["val_loss"], rel=1e-5)
    assert summary["val_auroc"] == pytest.approx(clean["val_auroc"], rel=1e-6)


def test_oom_while_caching_linear_probe_features_is_recovered(tiny_flags):
    flags = {**tiny_flags, **FAST_MODEL, "epochs": 1, "mode": "linear_probe", "augmentation": "none"}
    hook = InjectOOM(at_step=0, fits=8)
    trainer, summary, events = evaluate_with(flags, hook)
    assert trainer.cache_features
    assert summary["status"] == "finished", summary.get("error")
    assert hook.raised >= 1 and oom_warnings(events)
    assert max(max(sizes) for sizes in hook.seen.values()) <= 8


def test_oom_in_evaluation_at_batch_one_fails_with_a_clear_message(tiny_flags):
    hook = InjectOOM(at_step=0, fits=0)
    _, summary, _ = evaluate_with({**tiny_flags, **FAST_MODEL, "epochs": 1}, hook)
    assert summary["status"] == "failed"
    assert "out of memory in a forward pass (evaluation) even at batch 1" in summary["error"]
