"""The models on a generated world, end to end (generate, ingest, features, train, register):
they beat the rules score, are calibrated, sit below the oracle with the gap reported, are
registered as champions, and a worse configuration does not replace them.

Smaller worlds than the demo's leave too few churn events in a test window for model-versus-
baseline comparisons to mean anything. Comparisons use every backtest fold's held-out rows
pooled (three out-of-time windows) and the latest window alone; the latest window is also
checked for calibration.

The world is the demo's own (`make demo`: seed 7, 1,500 accounts x 730 days, from 2024-01-01),
never a seed picked because the models win on it. On it the churn models beat the rules score
and logistic regression in all 12 comparisons: 3 horizons x (pooled, test window) x (ROC AUC,
top-decile lift). The smallest leads are .016 AUC (30-day test window) and .40 lift (pooled 90
days). The test-window ECE is .006 / .011 / .012.

Seed 7 is one world, and its test windows hold 35-99 churn events, so one world's result
carries a world's noise. Six generator seeds (1-5 and 7) give a mean lead
over logistic regression of +.023 AUC and +.49 lift. The seeds win 12, 11, 10, 10, 12 and 12
of the 12 comparisons. Before 2026-12-02 the generator's renewals were barely more
health-driven than mid-term churn, and seed 7 won 8 of 12 here (the mean lead was +.013 AUC).
See `features.synth.params.RENEWAL_BETA`.
"""

from datetime import date

import numpy as np
import pytest

from features.contract.ingest import ingest_folder
from features.synth.generate import generate_world, write_world
from healthscore.settings import load_settings
from scoring.bundle import load_bundles, predict_horizons
from tests.support.train_frames import shared_once
from training.pipeline import run_training_job

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train-world")]
CHURN = [f"churn_{h}d" for h in (30, 60, 90)]
SEED = 7
"""The demo world's generator seed (Makefile `demo`)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_once(tmp_path_factory, "train-world", _build)


def _build(root):
    w = generate_world(1500, date(2024, 1, 1), 730, seed=SEED)  # the demo world
    write_world(w, root / "raw")
    settings = load_settings(paths={
        "data_dir": str(root / "raw"), "warehouse": str(root / "wh.duckdb"),
        "mlflow_uri": f"sqlite:///{root}/mlruns.db", "mlflow_artifacts": str(root / "mlruns"),
        "models_dir": str(root / "models")})
    ingest_folder(root / "raw", settings.paths.warehouse, settings.ingest)
    first = run_training_job(settings, truth=w.truth)
    # Ten stumps and one logistic C, without the oracle: the worse run only needs to be worse.
    worse = settings.model_copy(update={"training": settings.training.model_copy(
        update={"num_leaves": 2, "max_trees": 10, "search_trials": 0, "logistic_c": (1.0,)})})
    second = run_training_job(worse, training_set=first.training_set)
    return settings, first, second


def _beats(report, baseline):
    """(label, window, metric) where the model does not beat `baseline`: on every backtest
    fold's held-out rows pooled, and on the latest (test) window alone. ROC AUC, the metric
    the champion is chosen by, must be higher; the top-decile lift may not be more than 2%
    lower (one decile holds a few dozen churners: two of them move it by that much)."""
    misses = []
    for label in CHURN:
        m = report["models"][label]
        # `test` is every fold's held-out rows pooled; the first fold is the latest window
        latest = m["backtest"]["folds"][0]
        for window, metrics in (("pooled", m["test"]), ("test", latest)):
            for metric in ("roc_auc", "top_decile_lift"):
                slack = 0.98 if metric == "top_decile_lift" else 1.0
                if not metrics["model"][metric] > slack * metrics[baseline][metric]:
                    misses.append((label, window, metric, round(metrics["model"][metric], 3),
                                   round(metrics[baseline][metric], 3)))
    return misses


def test_every_churn_model_beats_the_rules_score(world):
    _, first, _ = world
    assert _beats(first.report, "rules") == []


def test_every_churn_model_beats_logistic_regression(world):
    _, first, _ = world
    assert _beats(first.report, "logistic") == []


def test_the_gap_to_the_oracle_is_in_the_report(world):
    _, first, _ = world
    for label in CHURN:
        m = first.report["models"][label]
        assert "oracle" in m["test"]
        gap = m["gap_to_oracle"]["roc_auc"]
        assert gap == pytest.approx(m["test"]["oracle"]["roc_auc"] - m["test"]["model"]["roc_auc"])
        # A model cannot be much better than the truth it is estimating.
        assert m["test"]["model"]["roc_auc"] < m["test"]["oracle"]["roc_auc"] + 0.02
        latest = m["backtest"]["folds"][0]
        assert latest["model"]["roc_auc"] < latest["oracle"]["roc_auc"] + 0.02


def test_churn_models_are_calibrated_on_the_test_window(world):
    _, first, _ = world
    for label in CHURN:
        assert first.report["models"][label]["backtest"]["folds"][0]["model"]["ece"] <= 0.03


def test_p30_le_p60_le_p90_for_every_row(world):
    settings, first, _ = world
    bundles = load_bundles(settings.paths.models_dir)
    frame = first.training_set.frame
    for target in ("churn", "expansion"):
        probs = predict_horizons({h: bundles[f"{target}_{h}d"] for h in (30, 60, 90)}, frame)
        assert (np.diff(probs.to_numpy(), axis=1) >= 0).all()


def test_mlflow_lists_six_champions_and_a_worse_run_leaves_them_in_place(world):
    from mlflow import MlflowClient

    settings, first, second = world
    client = MlflowClient(tracking_uri=settings.paths.mlflow_uri,
                          registry_uri=settings.paths.mlflow_uri)
    names = sorted(m.name for m in client.search_registered_models())
    assert names == sorted(f"healthscore-{t}-{h}d" for t in ("churn", "expansion")
                           for h in (30, 60, 90))
    for r in first.results.values():
        assert r.promotion["alias"] == "champion", r.promotion["reason"]
    margin = settings.training.promotion_margin
    for label, r in second.results.items():
        name = r.promotion["model_name"]
        champion = str(client.get_model_version_by_alias(name, "champion").version)
        if label in CHURN:  # ten stumps are clearly worse at churn: the champion stays
            assert r.promotion["alias"] == "challenger"
            assert champion == "1"
            assert "does not beat champion v1 on the same backtest" in r.promotion["reason"]
        else:
            # Expansion is barely learnable here, so ten stumps are not necessarily worse: the
            # rule decides, and the registry follows it.
            won = r.backtest_auc >= first.results[label].backtest_auc + margin
            assert champion == ("2" if won else "1")
            assert r.promotion["alias"] == ("champion" if won else "challenger")
