"""validate-score's measurement on hand-made frames: AUC direction, lift, churn per band and
non-negative suggested weights that find the dimension that carries the signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.health import load_rules
from scoring.health.profiles import SCORED_DIMENSIONS
from training.score_validation import (
    auc_lower_is_riskier,
    evaluate_scores,
    fit_weights,
    rescore,
    suggest_weights,
    top_decile_lift,
)


def scored_frame(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows where only `support` drives churn; engagement is noise; satisfaction often missing."""
    rng = np.random.default_rng(seed)
    dims = {d: rng.uniform(20, 100, n) for d in SCORED_DIMENSIONS}
    dims["satisfaction"][rng.uniform(size=n) < 0.3] = np.nan
    p = 1 / (1 + np.exp(-(-1.0 - (dims["support"] - 60) / 8)))
    churn = (rng.uniform(size=n) < p).astype(float)
    frame = pd.DataFrame({f"dim_{d}": v for d, v in dims.items()})
    frame["score"] = rescore(frame, {d: 1.0 for d in SCORED_DIMENSIONS})
    frame["band"] = np.where(frame["score"] > 60, "Healthy", "Needs Attention")
    frame["as_of"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(
        (np.arange(n) % 12) * 31, unit="D")
    frame["as_of"] = frame["as_of"].dt.to_period("M").dt.to_timestamp()
    labels = pd.DataFrame({"churn_30d": churn, "churn_60d": churn, "churn_90d": churn})
    return frame, labels


def test_a_lower_score_for_churners_is_an_auc_above_one_half():
    y = np.array([1, 1, 0, 0, np.nan])
    assert auc_lower_is_riskier(y, np.array([10, 20, 80, 90, 50])) == 1.0
    assert auc_lower_is_riskier(y, np.array([90, 80, 20, 10, 50])) == 0.0
    assert np.isnan(auc_lower_is_riskier(np.array([0, 0]), np.array([1, 2])))


def test_top_decile_lift_compares_the_lowest_scores_with_the_base_rate():
    score = np.arange(100, dtype=float)
    y = np.zeros(100)
    y[:10] = 1  # every churner in the lowest-scoring 10%
    assert top_decile_lift(y, score) == pytest.approx(10.0)


def test_evaluation_reports_each_dimension_and_churn_per_band():
    frame, labels = scored_frame()
    got = evaluate_scores(frame, labels, (30, 60, 90))
    assert got["auc"]["support"][90] > 0.75
    assert abs(got["auc"]["engagement"][90] - 0.5) < 0.05
    assert got["coverage"]["satisfaction"] == pytest.approx(0.7, abs=0.03)
    rates = {b["band"]: b["churn_90d"] for b in got["bands"]}
    assert rates["Needs Attention"] > rates["Healthy"]


def test_suggested_weights_are_non_negative_sum_to_100_and_find_the_signal():
    frame, labels = scored_frame()
    weights = fit_weights(frame, labels["churn_90d"].to_numpy())
    assert set(weights) == set(SCORED_DIMENSIONS)
    assert all(w >= 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(100, abs=0.5)
    assert max(weights, key=weights.get) == "support"
    assert weights["support"] > 60


def test_suggestions_are_judged_on_a_later_window_than_they_are_fitted_on():
    frame, labels = scored_frame()
    s = suggest_weights(frame, labels, load_rules(), horizon=90, fit_share=0.6)
    assert s is not None
    assert pd.Timestamp(s.fit_dates[-1]) + pd.Timedelta(days=90) <= pd.Timestamp(s.eval_dates[0])
    assert s.auc_suggested > s.auc_current
    assert s.gain == pytest.approx(s.auc_suggested - s.auc_current)


def test_a_dimension_without_data_gets_no_suggested_weight_and_is_named_with_why():
    frame, labels = scored_frame()
    frame["dim_relationship"] = np.nan
    s = suggest_weights(frame, labels, load_rules(), horizon=90, fit_share=0.6,
                        connected=frozenset({"accounts", "usage_events", "tickets"}))
    assert s is not None
    assert "relationship" not in s.weights and "relationship" not in s.current
    assert sum(s.weights.values()) == pytest.approx(100, abs=0.5)
    assert s.left_out == {"relationship": "no data: touchpoints not connected"}


def test_validate_score_on_a_world_without_support_surveys_or_touchpoints(capsys):
    from datetime import date

    from features.settings import FeatureConfig
    from features.synth.generate import generate_world
    from tests.support.feature_frames import warehouse
    from training.score_validation import validate_score, validation_dates
    from training.validate_cli import _print_validation

    tables = generate_world(200, date(2024, 1, 1), 540, seed=4).tables
    for name in ("tickets", "surveys", "touchpoints"):
        del tables[name]
    con = warehouse(tables)
    result = validate_score(con, load_rules(), FeatureConfig(),
                            dates=validation_dates(con, horizon=30), horizons=(30, 90))
    gone = {"support": "tickets", "satisfaction": "surveys", "relationship": "touchpoints"}
    assert result.left_out == {d: f"no data: {t} not connected" for d, t in gone.items()}
    assert result.suggested is not None
    assert set(result.suggested.weights) == {"engagement", "usage", "adoption", "value"}
    assert sum(result.suggested.current.values()) == pytest.approx(100, abs=0.5)
    _print_validation(result)
    out = " ".join(capsys.readouterr().out.split())
    for dim, table in gone.items():
        assert f"Left out of the suggested weights: {dim} (no data: {table} not connected)" \
            in out
