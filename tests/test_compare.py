"""Issue 26.5 and 26.7: `medcls compare` (paired bootstrap, DeLong, McNemar, config differences) and
`medcls train --seeds / --repeat`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from core.evaluation.compare import ScoredRun, aligned, compare_groups, compare_runs, mcnemar_p
from core.evaluation.run_model import RunModelError
from medcls_tui.cli import app
from medcls_tui.repeat import parse_seeds


def scored(name, probs_yes, targets, ids=None, patients=None, seed=0):
    probs = np.stack([1 - probs_yes, probs_yes], 1)
    ids = ids or [f"img{i}" for i in range(len(targets))]
    return ScoredRun(name, ["no", "yes"], False, ids, patients, np.asarray(targets), probs, [None, 0.5],
                     {"seed": seed, "lr": 0.001})


def correlated_pair(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    base = y * 1.0 + rng.normal(0, 1, n)
    a = 1 / (1 + np.exp(-base))
    b = 1 / (1 + np.exp(-(base + 0.15 * y + rng.normal(0, 0.1, n))))  # B: A plus a little signal
    return scored("A", a, y), scored("B", b, y, seed=1)


def test_the_bootstrap_is_paired_the_shared_noise_cancels():
    """Each run's own AUROC interval is wide (a few hundred images); the paired interval of their
    difference is far narrower, because both are scored on the same resampled patients."""
    a, b = correlated_pair()
    result = compare_groups([a], [b], n_boot=300, seed=0)
    lo, hi = result["per_class"]["yes"]["ci"]
    own_a = compare_groups([a], [scored("flat", np.full(400, 0.5), a.targets)], n_boot=300, seed=0)
    lo_a, hi_a = own_a["per_class"]["yes"]["ci"]  # interval of (0.5 - AUROC A): AUROC A's own spread
    assert (hi - lo) < 0.35 * (hi_a - lo_a)
    assert lo < result["per_class"]["yes"]["difference"] < hi and result["bootstrap"]["paired"]


def test_delong_p_and_mcnemar_for_two_single_runs():
    a, b = correlated_pair()
    comp = compare_groups([a], [b], n_boot=50)
    assert 0 <= comp["per_class"]["yes"]["delong_p"] < 0.05  # B is A plus signal, on 400 cases
    assert "mcnemar_p" in comp["operating"]
    assert mcnemar_p(np.array([True] * 5 + [False] * 3), np.array([False] * 5 + [False] * 3)) == pytest.approx(2 / 32)
    assert mcnemar_p(np.ones(4, bool), np.ones(4, bool)) == 1.0


def test_groups_of_seeds_give_the_mean_difference_and_the_spread():
    a1, b1 = correlated_pair(seed=0)
    runs = [scored(f"A{k}", a1.probs[:, 1] ** (1 + 0.1 * k), a1.targets, seed=k) for k in range(3)]
    others = [scored(f"B{k}", b1.probs[:, 1] ** (1 + 0.1 * k), a1.targets, seed=k) for k in range(3)]
    comp = compare_runs([runs, others], "test", n_boot=50)["comparisons"][0]
    entry = comp["per_class"]["yes"]
    assert comp["a"] == ["A0", "A1", "A2"] and entry["spread_a"] is not None and "delong_p" not in entry
    assert entry["auroc_b"] > entry["auroc_a"]


def test_runs_on_different_images_are_compared_on_the_shared_ones_or_refused():
    a, b = correlated_pair(n=40)
    targets = np.r_[a.targets[10:], a.targets[:10]]  # images img10..img49: the shared 30 keep their labels
    shifted = scored("C", np.r_[b.probs[10:, 1], b.probs[:10, 1]], targets, ids=[f"img{i + 10}" for i in range(40)])
    runs, images = aligned([a, shifted])
    assert images["shared_images"] == 30 and not images["all_shared"] and len(runs[0].ids) == 30
    disjoint = scored("D", b.probs[:, 1], b.targets, ids=[f"other{i}" for i in range(40)])
    with pytest.raises(RunModelError, match="no image in common"):
        aligned([a, disjoint])


def test_parse_seeds():
    assert parse_seeds(3, None, 7) == [7, 8, 9] and parse_seeds(None, "1, 2,5", 0) == [1, 2, 5]
    for bad in ("1,x", "", "2,2"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(None, bad, 0)


def test_train_seeds_then_compare_through_the_cli(tiny_flags, tmp_path):
    runs_dir = tiny_flags["output_dir"]
    common = ["--dataset", "synthetic", "--model", "resnet18", "--img_size", "32", "--synthetic_size", "96",
              "--epochs", "1", "--batch_size", "16", "--num_workers", "0", "--no_pretrained",
              "--output_dir", runs_dir, "--max_steps_per_epoch", "2"]
    trained = CliRunner().invoke(app, ["train", *common, "--run_name", "tiny", "--seeds", "1,2"])
    assert trained.exit_code == 0, trained.output
    assert "trained 2 of 2 seed(s)" in trained.output
    result = CliRunner().invoke(app, ["compare", "tiny-seed1", "tiny-seed2", "--output_dir", runs_dir,
                                      "--bootstrap", "30", "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "tiny-seed2 vs tiny-seed1" in result.output and "DeLong p" in result.output
    assert "seed: tiny-seed1=1, tiny-seed2=2" in result.output
    data = json.loads((tmp_path / "cmp" / "compare_test.json").read_text())
    assert data["images"]["all_shared"] and data["comparisons"][0]["bootstrap"]["paired"]
    assert (tmp_path / "cmp" / "compare_test.md").read_text().startswith("# Run comparison")
    one = CliRunner().invoke(app, ["compare", "tiny-seed1", "--output_dir", runs_dir])
    missing = CliRunner().invoke(app, ["compare", "tiny-seed1", "nope", "--output_dir", runs_dir])
    assert one.exit_code == 2 and "at least two runs" in one.output
    assert missing.exit_code == 2 and "nope" in missing.output


async def test_the_app_compares_marked_runs_at_80x24(tiny_flags):
    from textual.widgets import DataTable

    from core.config.resolve import resolve_config
    from core.training.trainer import Trainer
    from medcls_tui.screens.compare import CompareScreen
    from medcls_tui.screens.runs import RunsScreen
    from test_tui_helpers import make_app, picker_ready, press, screen_text, wait_for

    for seed in (1, 2):
        summary = Trainer(resolve_config({**tiny_flags, "epochs": 2, "max_steps_per_epoch": 1, "seed": seed,
                                          "data_seed": 0, "run_name": f"run{seed}"}, vram_gib=None)).fit()
        assert summary["status"] == "finished"
    app = make_app(tiny_flags["output_dir"])
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        await press(pilot, "r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="runs screen")
        runs = app.screen
        await press(pilot, "c")  # nothing marked: a hint, no screen
        assert isinstance(app.screen, RunsScreen)
        await press(pilot, "m")
        await press(pilot, "down")
        await press(pilot, "m")
        assert len(runs.marked) == 2 and "●1" in screen_text(app) and "●2" in screen_text(app)
        await press(pilot, "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="compare screen")
        screen = app.screen
        assert sorted(screen.series) == ["run1", "run2"]  # both validation curves on the one chart
        await wait_for(pilot, lambda: screen.result is not None or screen.error is not None, timeout=600,
                       what="comparison scored")
        assert screen.error is None, screen.error
        table = screen.query_one(DataTable)
        classes = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert classes == ["Normal", "Effusion", "Nodule", "Opacity", "macro"]
        await press(pilot, "l")
        assert screen.metric == "val_loss" and len(screen.series) == 2
        assert "DeLong" in screen_text(app)
