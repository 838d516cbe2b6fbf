"""A finished tiny run end to end: test split scored at the end of training, eval, thresholds,
predict, export and explain through the CLI (synthetic data, no fixtures needed)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from core.training.trainer import Trainer
from core.evaluation.run_model import load_run_model, predict_table
from core.evaluation.thresholds import choose_thresholds, load_thresholds
from core.config.resolve import resolve_config
from medcls_tui.cli import app

from conftest import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, one_torch_thread):
    """One trained tiny run (multiclass synthetic with train/val/test) shared by the tests here."""
    out = tmp_path_factory.mktemp("runs")
    trainer = Trainer(resolve_config({**TINY, "output_dir": str(out)}, vram_gib=None))
    summary = trainer.fit()
    assert summary["status"] == "finished"
    return trainer, summary, Path(trainer.run_dir)


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_end_of_training_scores_the_best_checkpoint_on_test_with_val_thresholds(finished):
    trainer, summary, run = finished
    bundle = trainer.bundle
    assert summary["test_n"] == len(bundle.test) and summary["test_checkpoint"] == "best"
    rm = load_run_model(run, "best")
    val = predict_table(rm.model, rm.normalize, bundle.val, rm.multi_label)
    stored = load_thresholds(run)
    assert stored["method"] == "youden" and stored["chosen_on"] == "val"
    assert stored["thresholds"] == choose_thresholds(val, bundle.val.targets, bundle.classes, False, "youden")
    report = json.loads((run / "eval_test.json").read_text())
    assert report["n"] == len(bundle.test) and report["checkpoint"] == "best"
    assert summary["test_auroc"] == report["macro"]["auroc"]["value"]
    lo, hi = summary["test_auroc_ci"]
    assert lo <= summary["test_auroc"] <= hi
    assert report["bootstrap"]["unit"] == "patient" and set(report["per_domain"]) <= set(bundle.domain_names)
    # the best checkpoint, not the last weights: scoring best.pt again gives the same figure
    from core.evaluation.metrics import evaluate_probabilities
    test = predict_table(rm.model, rm.normalize, bundle.test, rm.multi_label)
    again = evaluate_probabilities(test, bundle.test.targets, bundle.classes, False)
    assert again["macro"]["auroc"]["value"] == pytest.approx(summary["test_auroc"])
    # the epoch was chosen on validation only
    assert summary["best_value"] == max(r["metrics"]["val_auroc"] for r in _records(run, "EpochDone"))


def _records(run: Path, event: str) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("event") == event]


def test_reporter_prints_the_test_figures_at_the_end():
    import io

    from core.events import RunFinished
    from medcls_tui.reporter import ConsoleReporter

    stream = io.StringIO()
    ConsoleReporter(stream=stream, tty=False)(RunFinished(status="finished", run_dir="/r", summary={
        "test_n": 12, "test_auroc": 0.8123, "test_auroc_ci": [0.7, 0.9], "test_sensitivity": 0.75,
        "test_specificity": 0.5, "test_thresholds": "youden", "monitor": "val_auroc"}))
    assert "test split (12 images, best checkpoint): AUROC 0.8123 [0.700, 0.900]" in stream.getvalue()


def test_eval_cli_writes_json_md_plots_and_applies_a_target_sensitivity(finished):
    _, _, run = finished
    result = cli("eval", run, "--split", "val", "--sensitivity", "0.95", "--bootstrap", "40")
    assert result.exit_code == 0, result.output
    assert "macro" in result.output and "micro" in result.output and "bootstrap resamples by patient" in result.output
    stored = load_thresholds(run)
    assert stored["method"] == "sensitivity" and stored["target_sensitivity"] == 0.95
    report = json.loads((run / "eval_val.json").read_text())
    cm = np.array(report["confusion_matrix"])
    for k, (name, entry) in enumerate(report["per_class"].items()):
        # 4 single-label classes: the decision is argmax, so no threshold applies and each class's
        # sensitivity is the argmax decision's (the confusion matrix's), not a one-vs-rest point
        assert entry["threshold"] is None and stored["thresholds"][name] is None
        if cm[k].sum():
            assert entry["sensitivity"]["value"] == pytest.approx(cm[k, k] / cm[k].sum())
    assert "decision: the class with the highest probability" in result.output
    md = (run / "eval_val.md").read_text()
    assert "| macro |" in md and "eval_val_roc.png" in md
    for kind in ("roc", "pr", "reliability"):
        assert (run / f"eval_val_{kind}.png").stat().st_size > 1000
    # back to Youden for the other tests
    assert cli("eval", run, "--split", "val", "--thresholds", "youden", "--bootstrap", "0", "--no_plots").exit_code == 0


def test_eval_markdown_without_matplotlib_says_so_and_keeps_the_tables(finished, monkeypatch):
    _, _, run = finished
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "core.evaluation.plots", raising=False)
    result = cli("eval", run, "--split", "test", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    md = (run / "eval_test.md").read_text()
    assert "medcls[plots]" in md and "| macro |" in md and "Confusion matrix" in md


@pytest.mark.parametrize("args, expected", [
    (["--checkpoint", "middle"], "checkpoint: 'middle' is not one of best, last"),
    (["--split", "train"], "split: 'train' is not one of val, test"),
    (["--thresholds", "magic"], "threshold method: 'magic'"),
])
def test_eval_bad_input_is_one_line_exit_2(finished, args, expected):
    _, _, run = finished
    result = cli("eval", run, "--bootstrap", "0", "--no_plots", *args)
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_eval_unknown_run_is_one_line(tmp_path):
    result = cli("eval", "nope", "--output_dir", tmp_path)
    assert result.exit_code == 2 and "no run folder 'nope'" in result.output


def _write_test_images(trainer, folder: Path, n: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(trainer.bundle.test.image(i)).save(p)
        paths.append(p)
    return paths


def test_predict_files_folder_csv_with_an_unreadable_file(finished, tmp_path):
    trainer, _, run = finished
    paths = _write_test_images(trainer, tmp_path / "imgs")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    listing = tmp_path / "list.csv"
    listing.write_text("path,note\nimgs/img0.png,x\nbroken.png,y\n")
    out = tmp_path / "pred.csv"
    result = cli("predict", run, tmp_path / "imgs", listing, "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 file(s) could not be read" in result.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7 and sum(1 for r in rows if r["error"]) == 1
    rm = load_run_model(run, "best")
    expected = predict_table(rm.model, rm.normalize, trainer.bundle.test.subset(range(5)), False)
    got = np.array([[float(r[f"p_{c}"]) for c in rm.classes] for r in rows[:5]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r["labels"] for r in rows[:5]] == [rm.classes[i] for i in expected.argmax(1)]


def test_predict_tta_uses_training_views_never_a_mirror_and_says_which(finished, tmp_path):
    """--tta averages views inside training's augmentation (rotations, a crop), never the mirrored
    image training never shows; a run trained without pixel augmentation gets none, and says so."""
    from core.evaluation.tta import tta_plan

    trainer, _, run = finished
    paths = _write_test_images(trainer, tmp_path / "imgs", 2)
    out = tmp_path / "pred.json"
    result = cli("predict", run, *paths, "--format", "json", "--tta", "--out", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    rm = load_run_model(run, "best")
    assert rm.config.augmentation == "standard"
    description, views = tta_plan("standard")
    assert "test-time augmentation: " + description in result.output and "no mirroring" in description
    img = torch.from_numpy(np.stack([trainer.bundle.test.image(i) for i in range(2)]))[:, None]
    with torch.no_grad():
        probs = [torch.softmax(rm.model(rm.normalize(v(img) if v else img)), -1) for v in [None, *views]]
        mirror = torch.softmax(rm.model(rm.normalize(torch.flip(img, dims=[-1]))), -1)
    got = np.array([[r["probabilities"][c] for c in rm.classes] for r in rows])
    np.testing.assert_allclose(got, (sum(probs) / len(probs)).numpy(), atol=1e-5)
    assert not np.allclose(got, ((probs[0] + mirror) / 2).numpy(), atol=1e-4)
    # trained without pixel augmentation: no views, the output says none
    description, views = tta_plan("none")
    assert views == [] and description.startswith("none")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_dynamic_batch_and_sidecar_json(finished, tmp_path, fmt):
    _, _, run = finished
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    result = cli("export", run, "--format", fmt, "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_name(out.name + ".json").read_text())  # per-format name: never shared
    assert meta["parity_max_abs_diff"] < 1e-4 and "max abs diff" in result.output
    assert meta["classes"] == ["Normal", "Effusion", "Nodule", "Opacity"]
    assert meta["input"]["size"] == [32, 32] and len(meta["input"]["mean"]) == 3
    assert meta["thresholds"] == load_thresholds(run)["thresholds"]
    rm = load_run_model(run, "best")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = torch.softmax(rm.model(x), -1).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    else:
        got = torch.jit.load(str(out))(x).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_explain_writes_an_overlay_at_image_resolution(finished, tmp_path):
    trainer, _, run = finished
    big = np.array(Image.fromarray(trainer.bundle.test.image(0)).resize((96, 80)))
    Image.fromarray(big).save(tmp_path / "x.png")
    out = tmp_path / "cam.png"
    result = cli("explain", run, tmp_path / "x.png", "--class", "effusion", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Effusion (p=" in result.output
    overlay = np.array(Image.open(out))
    assert overlay.shape[0] > 80 and overlay.shape[1] >= 96 and overlay[:80, :96].std() > 0  # + legend band
    bad = cli("explain", run, tmp_path / "x.png", "--class", "Heart")
    assert bad.exit_code == 2 and "class: 'Heart' is not one of Normal, Effusion" in bad.output


def test_predict_cam_folder(finished, tmp_path):
    trainer, _, run = finished
    paths = _write_test_images(trainer, tmp_path / "imgs", 2)
    assert cli("predict", run, *paths, "--cam", tmp_path / "cams", "--out", tmp_path / "p.csv").exit_code == 0
    assert len(list((tmp_path / "cams").glob("*_cam.png"))) == 2


@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "resnet18"])
def test_grad_cam_target_layer_and_reshape_per_family(name):
    from core.evaluation.explain import cam_for, target_layer
    from core.evaluation.run_model import RunModel
    from core.models.build import build_model, model_family

    torch.manual_seed(0)
    model = build_model(name, 2, "full_finetune", img_size=64).eval()
    rm = RunModel(run_dir=Path("."), config=None, model=model, classes=["a", "b"], multi_label=True, img_size=64,
                  mean=(0.5,) * 3, std=(0.5,) * 3, family=model_family(name), checkpoint="best",
                  device=torch.device("cpu"))
    layer, reshape = target_layer(rm)
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: None if "out" in seen else seen.update(out=o))
    heat, index, prob = cam_for(rm, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), 1)
    handle.remove()
    spatial = reshape(seen["out"]) if reshape else seen["out"]
    assert spatial.ndim == 4 and spatial.shape[-1] == spatial.shape[-2] > 1  # a real (B, C, h, w) map
    assert heat.shape == (64, 64) and index == 1 and 0.0 <= prob <= 1.0


async def test_app_runs_screen_opens_the_evaluation_and_scores_val_in_a_worker(finished):
    from textual.widgets import DataTable

    from medcls_tui.screens.evaluation import EvaluationScreen
    from medcls_tui.screens.runs import RunsScreen
    from test_tui_helpers import make_app, picker_ready, press, screen_text, wait_for

    _, summary, run = finished
    app = make_app(run.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await press(pilot, "r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        await press(pilot, "t")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen), what="evaluation screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None, what="saved report shown")
        assert screen.split == "test"  # the test split scored at the end of training is shown first
        table = screen.query_one(DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == [
            "Normal", "Effusion", "Nodule", "Opacity", "macro", "micro"]
        assert "test split" in screen_text(app)
        (run / "eval_val.json").unlink(missing_ok=True)
        await press(pilot, "v")
        await wait_for(pilot, lambda: not screen.busy and screen.split == "val", timeout=600, what="val evaluation")
        assert (run / "eval_val.json").is_file() and screen.report["n"] == 14
        assert table.row_count == 6


def test_predict_reads_dicom_like_the_same_pixels_as_png(finished, tmp_path):
    """DICOM input goes through the dataset decoder: an 8-bit DICOM scores like the PNG of its pixels."""
    from official_layouts import write_dicom

    _, _, run = finished
    pixels = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint16)
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "same.png")
    write_dicom(tmp_path / "same.dcm", pixels, bits_stored=8)
    out = tmp_path / "pred.csv"
    result = cli("predict", run, tmp_path / "same.png", tmp_path / "same.dcm", "--out", out)
    assert result.exit_code == 0, result.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and not any(r["error"] for r in rows), rows
    probs = [[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-4)


def test_explain_png_names_class_probability_scale_and_a_coarse_grid(finished, tmp_path):
    """28.10: the PNG carries the class, its probability and a colour legend under the X-ray (whose
    pixels stay at image resolution); a map of fewer than 7x7 cells (resnet18 at 32 px: 1x1) is said
    to be too coarse to localise, in the CLI and the result."""
    from core.evaluation.explain import COARSE_GRID, _colormap, explain_file
    from core.evaluation.run_model import load_run_model

    trainer, _, run = finished
    big = np.array(Image.fromarray(trainer.bundle.test.image(0)).resize((96, 80)))
    Image.fromarray(big).save(tmp_path / "x.png")
    result = cli("explain", run, tmp_path / "x.png", "--class", "nodule", "--out", tmp_path / "cam.png")
    assert result.exit_code == 0, result.output
    assert "note: Grad-CAM grid 1x1 cells: too coarse to localise" in result.output
    rm = load_run_model(run, "best")
    info = explain_file(rm, tmp_path / "x.png", tmp_path / "cam2.png", "Nodule")
    assert info["grid"] == [1, 1] and min(info["grid"]) < COARSE_GRID and "too coarse" in info["note"]
    png = np.array(Image.open(tmp_path / "cam2.png"))
    assert png.shape[0] > 80 + 20  # a legend band below the 80-pixel-high picture
    band = png[80:]
    assert (band > 200).all(axis=2).sum() > 50  # white text: the class and probability, low/high
    jet = _colormap(np.linspace(0.0, 1.0, 5))
    for colour in (jet[0], jet[-1]):  # the colour scale's two ends are drawn in the band
        assert (np.abs(band.astype(int) - colour.astype(int)).sum(axis=2) <= 6).any(), colour
    # the text says what was explained: rendered again, the label's pixels are the band's
    from PIL import ImageDraw, ImageFont

    label = Image.new("RGB", (band.shape[1], 40), (0, 0, 0))
    fs = max(11, min(20, band.shape[1] // 32))
    ImageDraw.Draw(label).text((4, 3), f"Nodule p={info['probability']:.3f}", fill=(255, 255, 255),
                               font=ImageFont.load_default(size=fs))
    assert np.array_equal(np.asarray(label)[:fs + 6], band[:fs + 6])


async def test_leaving_the_evaluation_screen_mid_scoring_stops_it_and_says_so(finished, monkeypatch):
    """Escape while the worker scores: the worker ends without an error (it never touches the gone
    screen), nothing half-written, and the app says the evaluation stopped."""
    import threading

    from textual.worker import WorkerState

    import core.evaluation.scoring as scoring
    from medcls_tui.screens.evaluation import EvaluationScreen
    from medcls_tui.screens.runs import RunsScreen
    from test_tui_helpers import make_app, picker_ready, press, wait_for

    _, _, run = finished
    started, gate = threading.Event(), threading.Event()
    real = scoring.predict_table

    def gated(*args, **kwargs):
        started.set()
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "predict_table", gated)
    (run / "eval_val.json").unlink(missing_ok=True)
    app = make_app(run.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await press(pilot, "r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        await press(pilot, "t")
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen), what="evaluation screen")
        await press(pilot, "v")
        await wait_for(pilot, started.is_set, what="scoring started")
        worker = next(w for w in app.workers if w.group == "evaluate")
        await press(pilot, "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, EvaluationScreen), what="screen left")
        gate.set()
        await wait_for(pilot, lambda: worker.is_finished, timeout=120, what="worker ended")
        assert worker.state != WorkerState.ERROR, worker.error
        await wait_for(pilot, lambda: any("stopped on leaving" in n.message for n in app._notifications),
                       timeout=30, what="stop notice")
    assert not (run / "eval_val.json").exists()
