"""Issue 23 points 3, 5, 6, 7, 8: honest bootstrap intervals, validation's precision, stoppable and
atomic scoring, Grad-CAM's refusals and decoding, prefixes, and a table readable at 80 columns."""
from __future__ import annotations

import json
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from core.training.trainer import Trainer
from core.evaluation import thresholds as thr
from core.evaluation.metrics import BootstrapSettings, evaluate_probabilities
from core.config.resolve import resolve_config
from medcls_tui.cli import app

from conftest import TINY

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- bootstrap
def _scores(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)
    return np.stack([1 - p1, p1], 1), y


def test_rows_without_a_patient_id_are_each_their_own_patient():
    """30% of the rows carry an id: the other 70% are one patient each (the splitter's rule), never
    one pooled "None" patient; so the interval equals the one with unique made-up ids."""
    probs, y = _scores(200)
    ids = [f"pt{i // 2}" if i < 60 else None for i in range(200)]
    filled = [p if p is not None else f"alone{i}" for i, p in enumerate(ids)]
    boot = BootstrapSettings(n=200, seed=1)
    partial = evaluate_probabilities(probs, y, ["a", "b"], False, patients=ids, bootstrap=boot)
    unique = evaluate_probabilities(probs, y, ["a", "b"], False, patients=filled, bootstrap=boot)
    assert partial["macro"]["auroc"]["ci"] == unique["macro"]["auroc"]["ci"]
    assert partial["bootstrap"]["units"] == 30 + 140 and partial["bootstrap"]["images_without_patient_id"] == 140
    empty = evaluate_probabilities(probs, y, ["a", "b"], False, patients=["" if p is None else p for p in ids],
                                   bootstrap=boot)
    assert empty["macro"]["auroc"]["ci"] == unique["macro"]["auroc"]["ci"]


def test_intervals_say_how_many_resamples_defined_them_and_mark_the_partial_ones():
    """A class with one positive image loses about a third of the resamples: counted and marked."""
    from core.evaluation.report import PARTIAL_NOTE, fmt_ci, markdown

    rng = np.random.default_rng(0)
    n = 40
    y = np.zeros((n, 2))
    y[:, 0] = rng.random(n) < 0.5
    y[3, 1] = 1  # class b: one positive
    probs = rng.random((n, 2))
    report = evaluate_probabilities(probs, y, ["a", "b"], True, bootstrap=BootstrapSettings(n=300, seed=0))
    a, b = report["per_class"]["a"]["auroc"], report["per_class"]["b"]["auroc"]
    assert a["ci_resamples"] == 300 and a["ci_partial"] is False
    assert 150 < b["ci_resamples"] < 0.9 * 300 and b["ci_partial"] is True
    assert fmt_ci(b).endswith("*") and not fmt_ci(a).endswith("*")
    assert PARTIAL_NOTE in markdown(report, "test", {})


def test_bootstrap_memory_stays_bounded_on_a_large_split():
    """Micro figures repeat every weight per class: 20k images x 14 classes x 64 resamples would be
    hundreds of MB at once; chunks are sized so the peak stays small."""
    rng = np.random.default_rng(0)
    n, c = 20_000, 14
    probs = rng.random((n, c)).astype(np.float32)
    y = rng.random((n, c)) < 0.1
    tracemalloc.start()
    try:
        evaluate_probabilities(probs, y, [f"c{i}" for i in range(c)], True, bootstrap=BootstrapSettings(n=64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"


# ---------------------------------------------------------------- a real run, CLI output
@pytest.fixture(scope="module")
def run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("runs")
    trainer = Trainer(resolve_config({**TINY, "output_dir": str(out)}, vram_gib=None))
    assert trainer.fit()["status"] == "finished"
    return trainer, Path(trainer.run_dir)


def test_eval_table_is_readable_at_80_columns_and_in_a_log(run):
    """Off a terminal (CliRunner, a log file): every figure and interval in full, never '0.9…'; the
    bootstrap's progress is one summary line, not one per ~10% per domain."""
    _, run_dir = run
    result = cli("eval", run_dir, "--split", "test", "--bootstrap", "200", "--no_plots")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    report = json.loads((run_dir / "eval_test.json").read_text())
    for entry in (*report["per_class"].values(), report["macro"]):
        lo, hi = entry["auroc"]["ci"]
        assert f"{lo:.3f}-{hi:.3f}" in result.output
    assert len([ln for ln in result.output.splitlines() if ln.startswith("bootstrap")]) == 1


def test_eval_tables_fit_80_columns_on_a_terminal(run, monkeypatch, capsys):
    import sys

    from medcls_tui.cli_eval import _print_eval

    _, run_dir = run
    report = json.loads((run_dir / "eval_test.json").read_text())
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    _print_eval(report, "test", "best")
    out = capsys.readouterr().out
    table_lines = [ln for ln in out.splitlines() if ln.strip().startswith(("Normal", "macro", "micro", "Effusion"))]
    assert table_lines and all(len(ln) <= 80 for ln in table_lines) and "…" not in out
    lo, hi = report["macro"]["auroc"]["ci"]
    assert f"{lo:.3f}-{hi:.3f}" in out


def test_end_of_training_scoring_stops_on_request_and_the_run_stays_finished(tmp_path, one_torch_thread):
    """A stop (quit, SIGTERM, first Ctrl-C) while the test split is being scored: the run stays
    finished with its checkpoints, scoring is marked skipped; a second Ctrl-C then never turns it
    into `aborted`; `medcls eval` scores it later."""
    from core.events import Control, DataProgress

    control = Control()

    def on_event(event):
        if isinstance(event, DataProgress) and event.description.startswith("thresholds on val"):
            control.request_stop()

    trainer = Trainer(resolve_config({**TINY, "output_dir": str(tmp_path)}, vram_gib=None), on_event=on_event,
                      control=control)
    summary = trainer.fit()
    run_dir = Path(trainer.run_dir)
    assert summary["status"] == "finished" and summary["test_scoring"].startswith("skipped")
    assert "test_auroc" not in summary and not (run_dir / "eval_test.json").exists()
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    trainer.write_abort_summary()  # what a second Ctrl-C does
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["status"] == "finished" and again["test_scoring"].startswith("skipped")
    assert cli("eval", run_dir, "--bootstrap", "0", "--no_plots").exit_code == 0


def test_json_writers_never_share_a_temp_file(tmp_path):
    from core.runs.folder import write_json_atomic

    target = tmp_path / "summary.json"
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(k: int) -> None:
        start.wait()
        try:
            for i in range(150):
                write_json_atomic(target, {"writer": k, "i": i, "pad": "x" * 20_000})
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert json.loads(target.read_text())["i"] == 149
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


# ---------------------------------------------------------------- explain, prefixes
@pytest.mark.parametrize("name", ["cait_xxs24_224", "xcit_nano_12_p16_224"])
def test_grad_cam_refuses_token_layouts_it_does_not_know(name):
    from types import SimpleNamespace

    from core.evaluation.explain import target_layer
    from core.evaluation.run_model import RunModel, RunModelError
    from core.models.build import build_model, model_family

    model = build_model(name, 2, "full_finetune", img_size=64).eval()
    rm = RunModel(run_dir=Path("."), config=SimpleNamespace(model=name), model=model, classes=["a", "b"],
                  multi_label=False, img_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, family=model_family(name),
                  checkpoint="best", device=torch.device("cpu"))
    with pytest.raises(RunModelError, match="does not know the token layout"):
        target_layer(rm)


def test_wrapper_prefixes_are_stripped_in_any_order(tmp_path):
    from core.models.pretrained import read_state_dict as load_state_file

    t = torch.zeros(1)
    state = {"_orig_mod.module.backbone.a": t, "module._orig_mod.b": t, "module.module.c": t, "d": t}
    torch.save(state, tmp_path / "w.pt")
    assert set(load_state_file(tmp_path / "w.pt")) == {"a", "b", "c", "d"}


def test_a_compiled_or_dataparallel_checkpoint_loads_for_eval(run, tmp_path):
    import shutil

    from core.evaluation.run_model import load_run_model

    _, src = run
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    path = dst / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    state["model"] = {f"module._orig_mod.{k}": v for k, v in state["model"].items()}
    torch.save(state, path)
    rm = load_run_model(dst, "best")
    ref = load_run_model(src, "best")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rm.model(x), ref.model(x))


def test_explain_feeds_the_model_the_pixels_predict_decodes(run, tmp_path):
    """A large JPEG is decoded with draft (DCT) downscaling by the cache and predict: explain's
    probability for the class equals predict's for the same file."""
    _, run_dir = run
    rng = np.random.default_rng(0)
    big = (np.add.outer(np.arange(1024), np.arange(1024)) % 256).astype(np.uint8)
    big = np.clip(big.astype(int) + rng.integers(-40, 40, big.shape), 0, 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "x.jpg", quality=90)
    out = tmp_path / "p.json"
    assert cli("predict", run_dir, tmp_path / "x.jpg", "--out", out).exit_code == 0
    probs = json.loads(out.read_text())[0]["probabilities"]
    result = cli("explain", run_dir, tmp_path / "x.jpg", "--class", "Normal", "--out", tmp_path / "cam.png")
    assert result.exit_code == 0, result.output
    assert f"Normal (p={probs['Normal']:.3f})" in result.output
    from core.evaluation.explain import explain_file
    from core.evaluation.run_model import load_run_model

    got = explain_file(load_run_model(run_dir), tmp_path / "x.jpg", tmp_path / "cam2.png", "Normal")
    assert got["probability"] == pytest.approx(probs["Normal"], abs=1e-6)


def test_eval_runs_the_model_at_validations_precision(tmp_path, monkeypatch, one_torch_thread):
    """Mixed precision (bf16 autocast, here forced on the CPU as CUDA gives it): `summary.json`'s
    val_auroc and `eval --split val --checkpoint last` agree, because eval autocasts as validation did."""
    import core.training.components
    import core.training.precision

    def bf16(mixed_precision, amp_dtype, device):
        return torch.bfloat16 if mixed_precision else None

    monkeypatch.setattr(core.training.components, "autocast_dtype", bf16)
    monkeypatch.setattr(core.training.precision, "autocast_dtype", bf16)
    trainer = Trainer(resolve_config({**TINY, "synthetic_task": "binary", "mixed_precision": True, "synthetic_size": 480,
                                      "output_dir": str(tmp_path)}, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished"
    result = cli("eval", trainer.run_dir, "--split", "val", "--checkpoint", "last", "--bootstrap", "0", "--no_plots")
    assert result.exit_code == 0, result.output
    report = json.loads((Path(trainer.run_dir) / "eval_val.json").read_text())
    assert report["macro"]["auroc"]["value"] == pytest.approx(summary["val_auroc"], abs=1e-6)


def test_end_of_training_line_names_the_decision_rule_the_figures_used(run):
    """The CLI's closing test line: a 3+ class run's figures come from the argmax (no threshold applies),
    so the line must not say they were taken at Youden thresholds."""
    from medcls_tui.reporter import test_line

    _, path = run
    summary = json.loads((path / "summary.json").read_text())
    rule = thr.load_thresholds(path, "best")["rule"]
    assert summary["test_decision"] == rule
    line = test_line(summary)
    if rule == "argmax":
        assert "argmax, no threshold" in line and "youden" not in line
    else:
        assert f"at {summary['test_thresholds']} thresholds" in line
    assert "argmax, no threshold" in test_line({**summary, "test_decision": "argmax"})
    assert "at youden thresholds" in test_line({**summary, "test_decision": "binary_threshold",
                                                "test_thresholds": "youden"})
