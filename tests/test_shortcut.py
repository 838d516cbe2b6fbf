"""Issue 26.1-3: the shortcut checks (source-only baseline, within-source AUROC, the warning)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from core.config.resolve import resolve_config
from core.events import TrainingWarning
from core.evaluation.metrics import evaluate_probabilities
from core.evaluation.shortcut import (ShortcutSettings, analyse, cramers_v, source_only_probabilities,
                                      within_source_auroc)
from core.training.trainer import Trainer
from medcls_tui.cli import app


def test_cramers_v_is_zero_for_independent_columns_and_one_for_a_copy():
    domains = np.repeat(np.arange(4), 50)
    assert cramers_v(domains, domains) == pytest.approx(1.0)
    assert cramers_v(domains, np.tile(np.arange(4), 50)) == pytest.approx(0.0)  # every source, every label alike
    assert cramers_v(domains, np.zeros(200, int)) is None


def test_within_source_auroc_by_hand():
    """Source A: positives 0.9, 0.8 vs negative 0.85 -> 1 of 2 pairs = 0.5; source B: positive 0.2 vs
    negatives 0.1, 0.15 -> 2 of 2 = 1.0; pooled over the 4 within-source pairs = 3/4."""
    scores = np.array([[0.9], [0.8], [0.85], [0.2], [0.1], [0.15]])
    labels = np.array([[1], [1], [0], [1], [0], [0]], dtype=bool)
    domains = np.array([0, 0, 0, 1, 1, 1])
    got = within_source_auroc(scores, labels, domains, ["A", "B"])[0]
    assert got["per_source"] == {"A": 0.5, "B": 1.0} and got["pooled"] == pytest.approx(0.75)


def test_source_only_baseline_is_the_training_split_rate_per_source():
    train_domains, train_targets = np.array([0, 0, 0, 1, 1]), np.array([1, 1, 0, 0, 0])
    probs = source_only_probabilities(train_domains, train_targets, np.array([0, 1, 2]), 2, False)
    assert probs[0, 1] == pytest.approx(3 / 5) and probs[1, 1] == pytest.approx(1 / 4)  # add-one smoothed
    assert probs[2, 1] == pytest.approx(3 / 7)  # a source unseen in training: the overall rate


def fake_bundle(domains, targets, domain_names):
    table = SimpleNamespace(domains=np.asarray(domains), targets=np.asarray(targets), patients=None)
    return table, SimpleNamespace(classes=["no", "yes"], multi_label=False, domain_names=domain_names, train=table)


@pytest.mark.parametrize("confounded", [True, False])
def test_the_warning_fires_on_a_confound_and_stays_quiet_without_one(confounded):
    rng = np.random.default_rng(0)
    n = 400
    targets = rng.integers(0, 2, n)
    domains = targets.copy() if confounded else rng.integers(0, 2, n)
    p_yes = np.where(domains == 1, 0.8, 0.2) if confounded else 0.5 + 0.3 * (targets - 0.5) + rng.normal(0, 0.2, n)
    probs = np.stack([1 - p_yes, p_yes], 1).clip(0.01, 0.99)
    table, bundle = fake_bundle(domains, targets, ["A", "B"])
    report = evaluate_probabilities(probs, targets, bundle.classes, False)
    section = analyse(probs, table, bundle, SimpleNamespace(n=0, seed=0, level=0.95), report)
    if confounded:
        assert section["baseline"]["macro_auroc"]["value"] == pytest.approx(1.0)
        assert "A, B" in section["warning"] and "--holdout_domain" in section["warning"]
    else:
        assert section["association"]["cramers_v"] < 0.1 and section["warning"] is None


def test_data_without_sources_gets_no_shortcut_section():
    table, bundle = fake_bundle(np.zeros(20, int), np.arange(20) % 2, ["default"])
    probs = np.full((20, 2), 0.5)
    assert analyse(probs, table, bundle, SimpleNamespace(n=0, seed=0, level=0.95),
                   evaluate_probabilities(probs, table.targets, bundle.classes, False)) is None


def train(tiny_flags, confound: float, name: str):
    events = []
    trainer = Trainer(resolve_config({**tiny_flags, "epochs": 1, "max_steps_per_epoch": 2, "run_name": name,
                                      "synthetic_confound": confound}, vram_gib=None), on_event=events.append)
    summary = trainer.fit()
    assert summary["status"] == "finished", summary.get("error")
    return trainer, summary, [e for e in events if isinstance(e, TrainingWarning) and e.kind == "shortcut"]


def test_confounded_phantoms_warn_at_the_end_of_training_and_in_eval(tiny_flags):
    trainer, summary, warnings = train(tiny_flags, 1.0, "confounded")
    assert summary["test_source_only_auroc"] == pytest.approx(1.0)
    assert summary["test_shortcut_warning"] and len(warnings) == 1
    assert "scanner_A" in warnings[0].message and "XDomainMix".lower() in warnings[0].message.lower()
    result = CliRunner().invoke(app, ["eval", "confounded", "--output_dir", tiny_flags["output_dir"],
                                      "--bootstrap", "20", "--no_plots"])
    assert result.exit_code == 0, result.output
    assert "a source-only guess scores macro AUROC 1.000" in result.output and "warning (shortcut): the source predicts the label" in result.output
    assert "Finding or source?" in (trainer.run_dir / "eval_test.md").read_text()


def test_unconfounded_phantoms_stay_quiet(tiny_flags):
    _, summary, warnings = train(tiny_flags, 0.0, "plain")
    assert summary["test_shortcut_warning"] is None and warnings == []


def test_data_stats_reports_the_source_association_and_the_baseline():
    confounded = CliRunner().invoke(app, ["data", "stats", "--img_size", "32", "--synthetic_confound", "1.0"])
    assert confounded.exit_code == 0, confounded.output
    assert "test: Cramér's V 1.00" in confounded.output and "source-only macro AUROC 1.000" in confounded.output
    plain = CliRunner().invoke(app, ["data", "stats", "--img_size", "32", "--json"])
    import json

    stats = json.loads(plain.output[plain.output.index("{"):])
    assert stats["source_vs_label"]["test"]["cramers_v"] < 0.3


async def test_the_evaluation_screen_shows_the_warning_at_80x24(tiny_flags):
    from textual.widgets import Static

    from medcls_tui.screens.evaluation import EvaluationScreen
    from test_tui_helpers import make_app, picker_ready, screen_text, wait_for

    trainer, summary, _ = train(tiny_flags, 1.0, "confounded")
    app = make_app(trainer.run_dir.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await picker_ready(pilot)
        app.push_screen(EvaluationScreen(trainer.run_dir))
        await wait_for(pilot, lambda: isinstance(app.screen, EvaluationScreen) and app.screen.report is not None,
                       what="saved report shown")
        banner = app.screen.query_one("#eval-shortcut", Static)
        assert banner.display and "shortcut: the source predicts the label" in str(banner.render())
        assert "shortcut" in screen_text(app)


def test_domain_probe_reads_the_source_from_features_that_carry_it_and_not_otherwise():
    from core.evaluation.domain_probe import domain_probe, patient_folds

    rng = np.random.default_rng(0)
    domains = rng.integers(0, 3, 240)
    patients = [f"p{i // 2}" for i in range(240)]  # two images per patient
    folds = patient_folds(patients, 240)
    assert all(folds[i] == folds[i + 1] for i in range(0, 240, 2))  # a patient never straddles folds
    carrying = np.eye(3)[domains] * 2.0 + rng.normal(0, 0.3, (240, 3))
    blind = rng.normal(0, 1.0, (240, 200))  # enough dimensions to memorise: only held-out folds keep it honest
    sees = domain_probe(carrying, domains, patients, ["a", "b", "c"])
    guesses = domain_probe(blind, domains, patients, ["a", "b", "c"])
    assert sees["accuracy"] > 0.95 and sees["by"] == "patient"
    assert guesses["accuracy"] < sees["majority_accuracy"] + 0.1
    with pytest.raises(ValueError, match="single source"):
        domain_probe(carrying, np.zeros(240, int), patients, ["a"])


def test_eval_domain_probe_through_the_cli(tiny_flags):
    import json

    trainer, _, _ = train(tiny_flags, 1.0, "confounded")
    result = CliRunner().invoke(app, ["eval", "confounded", "--output_dir", tiny_flags["output_dir"], "--split", "val",
                                      "--bootstrap", "0", "--no_plots", "--domain_probe"])
    assert result.exit_code == 0, result.output
    assert "domain probe: the features name the source of" in result.output
    probe = json.loads((trainer.run_dir / "eval_val.json").read_text())["domain_probe"]
    assert 0.0 <= probe["accuracy"] <= 1.0 and probe["images"] == len(trainer.bundle.val)


def test_the_within_source_rule_alone_raises_the_warning():
    from core.evaluation.shortcut import warning

    section = {"association": {"cramers_v": 0.6, "p_value": 0.001, "counts": {"A": {}, "B": {}}},
               "baseline": {"macro_auroc": {"value": 0.60}}, "model_macro_auroc": 0.90, "within_pooled_macro": 0.70}
    text = warning(section, ["A", "B"], ShortcutSettings())
    assert "within a source its AUROC is 0.700 against 0.900 overall" in text and "barely" not in text
    assert warning({**section, "within_pooled_macro": 0.85}, ["A", "B"], ShortcutSettings()) is None
