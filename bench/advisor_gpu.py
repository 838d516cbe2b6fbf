"""Check the batch-size advisor on a real GPU (issue 7): does the recommended batch survive training?

For each model (default: resnet50, vit_base_patch16, swin_base; 224 px, AMP, full fine-tune):
  1. probe_batch_size(): probe time, max safe batch, recommended batch x accumulation, peak, img/s;
  2. train 100 optimizer steps with the engine at that batch and accumulation on the built-in
     phantoms (in memory, no augmentation, so the loader is not the bottleneck), with a full
     validation pass after every epoch at the same batch;
  3. report the training/eval peak memory (torch.cuda.max_memory_allocated), training img/s and
     whether any out-of-memory recovery happened (it should not).

    uv run python bench/advisor_gpu.py                       # on the GPU machine
    uv run python bench/advisor_gpu.py --device cpu --models test_resnet --img-size 32 --steps 6 \\
        --probe-budget 10                                     # smoke test of the script itself

One JSON line per model goes to stdout (and to --out if given), then a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.hardware.advisor import probe_batch_size, read_hardware  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data.synthetic import SPLIT_FRACTIONS  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402
from core.events import StepDone, TrainingWarning  # noqa: E402
from core.config.resolve import resolve_config  # noqa: E402

DEFAULT_MODELS = ("resnet50", "vit_base_patch16", "swin_base")


def run_model(model: str, args, out_dir: Path) -> dict:
    base = {"model": model, "mode": "full_finetune", "img_size": args.img_size, "mixed_precision": True,
            "dataset": "synthetic", "augmentation": "none", "device": args.device}
    cfg = TrainConfig(**base)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    t0 = time.perf_counter()
    probe = probe_batch_size(cfg, time_budget_s=args.probe_budget, margin=args.margin)
    probe_s = time.perf_counter() - t0
    batch, accum = probe.recommended_batch, probe.grad_accum_steps
    effective = batch * accum
    n_train = int(round(SPLIT_FRACTIONS[0] * args.images))
    per_epoch = max(1, min(args.steps, n_train // effective))
    epochs = math.ceil(args.steps / per_epoch)
    per_epoch = math.ceil(args.steps / epochs)  # epochs x per_epoch = steps (or just above)
    flags = {**base, "batch_size": batch, "grad_accum_steps": accum, "synthetic_size": args.images,
             "epochs": epochs, "max_steps_per_epoch": per_epoch, "warmup_epochs": 0.0,
             "num_workers": args.workers, "output_dir": str(out_dir), "log_every": 10**6}
    events: list = []
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    summary = Trainer(resolve_config(flags, vram_gib="detect"), on_event=events.append).fit()
    train_s = time.perf_counter() - t1
    steps = [e for e in events if isinstance(e, StepDone)]
    ooms = [e.message for e in events if isinstance(e, TrainingWarning) and e.kind == "oom"]
    return {
        "model": model, "img_size": args.img_size, "device": probe.device,
        "probe_s": round(probe_s, 1), "probe_timed_out": probe.timed_out,
        "max_safe_batch": probe.max_safe_batch, "recommended_batch": batch, "grad_accum_steps": accum,
        "probe_limit_gib": probe.limit_gib, "probe_peak_gib": probe.peak_mem_gib,
        "probe_img_s": probe.images_per_sec, "eval_batch_ok": probe.eval_batch_ok,
        "train_status": summary.get("status"), "train_steps": summary.get("global_step"),
        "train_img_s": round(steps[-1].images_per_sec, 1) if steps else None,
        "train_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "micro_batch_at_end": summary.get("micro_batch"), "oom_recoveries": len(ooms),
        "train_s": round(train_s, 1), "error": summary.get("error"), "probe_reasons": probe.reasons,
    }


def markdown(rows: list[dict]) -> str:
    head = ("| model | probe s | max safe | recommended | probe peak / limit GiB | probe img/s | "
            "train peak GiB | train img/s | OOM recoveries | status |\n|" + "---|" * 10)
    lines = [head]
    for r in rows:
        lines.append(f"| {r['model']} | {r['probe_s']} | {r['max_safe_batch']} | {r['recommended_batch']} x "
                     f"{r['grad_accum_steps']} | {r['probe_peak_gib']} / {r['probe_limit_gib']} | {r['probe_img_s']} | "
                     f"{r['train_peak_gib']} | {r['train_img_s']} | {r['oom_recoveries']} | {r['train_status']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps of the training check")
    parser.add_argument("--images", type=int, default=2000, help="phantom images (70%% train, 15%% val)")
    parser.add_argument("--probe-budget", type=float, default=60.0)
    parser.add_argument("--margin", type=float, default=0.10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines here")
    args = parser.parse_args()
    hw = read_hardware()
    print(json.dumps({"hardware": [vars(g) for g in hw.gpus], "source": hw.source, "torch": torch.__version__}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            row = run_model(model, args, Path(tmp))
            rows.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
