"""A new customer's export as the product meets it: ten months of history, monthly billing,
usage events only (no tickets, surveys or touchpoints) and event types of its own. Trained with
the default settings, the churn model the backtest picks is LightGBM, and it beats both of the
product's baselines, logistic regression and the rules score, on the same pooled out-of-fold
rows. On such a world churn is close to linear in the features and the events are few, so the
trees boost from the logistic fit (`training.lightgbm_start`) rather than rebuild it.

3,000 accounts (about 240 pooled test churns); bench/bench_selection.py measures the same on
more seeds and at 5,000 and 10,000 accounts (bench/RESULTS.md)."""

import dataclasses
from datetime import date

import pytest

import features.synth.params as P
from features.contract.ingest import ingest_folder
from features.synth.generate import generate_world, write_world
from healthscore.settings import load_settings
from tests.support.train_frames import shared_once
from training import baselines
from training.pipeline import load_training_set, plan_backtests, train_and_backtest
from training.settings import TrainingConfig

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train-ten-months")]
LABEL = "churn_30d"  # ten months: the longest churn horizon that fits


def _build(root):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "SEGMENT_PROFILES", tuple(
            dataclasses.replace(p, terms=(P.MONTH,), term_probs=(1.0,))
            for p in P.SEGMENT_PROFILES))
        world = generate_world(3000, date(2024, 1, 1), 305, seed=5,
                               event_types=P.EXAMPLE_EVENT_TYPES)
    for table in ("tickets", "surveys", "touchpoints"):
        del world.tables[table]
    write_world(world, root / "raw")
    # The defaults, not the suite's smaller search: what `healthscore train` runs with no config.
    settings = load_settings(paths={"warehouse": str(root / "wh.duckdb")},
                             training={"targets": ("churn",),
                                       "search_trials": TrainingConfig().search_trials})
    ingest_folder(root / "raw", settings.paths.warehouse, settings.ingest)
    ts = load_training_set(settings)
    rules = baselines.rules_scores(ts.frame[["account_id", "as_of", *ts.features]],
                                   ts.connected)
    cfg = settings.training
    plans = plan_backtests(ts, cfg, list(cfg.targets))
    result = train_and_backtest(ts, cfg, rules=rules, plans=plans, targets=list(plans))[LABEL]
    return result.selection, result.bundle.kind, result.bundle.metadata["search"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_once(tmp_path_factory, "train-ten-months", _build)


def test_lightgbm_is_the_champion_and_beats_both_baselines(trained):
    choice, _, _ = trained
    assert choice["scorer"] == "model"
    auc = {k: v["value"] for k, v in choice["roc_auc"].items()}
    assert auc["model"] > auc["logistic"] > auc["rules"]
    assert choice["lead"]["logistic"]["value"] > 0.005
    assert choice["lead"]["rules"]["ci95"][0] > 0.1  # far beyond the noise


def test_the_registered_model_boosts_from_the_logistic_fit(trained):
    _, kind, searched = trained
    assert kind == "lightgbm_on_logistic"
    assert searched["lightgbm_start"] == "logistic"  # the latest fold's searched parameters
