"""The rules score: normalisation, dimensions, composite, grades, bands, status and trend.

Property tests (hypothesis) pin the invariants: the score stays within 0..100, the composite
renormalises over any subset of missing dimensions, and raising a higher-is-healthier feature (or
lowering a lower-is-healthier one) never lowers its dimension score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract.tables import TABLES
from features.registry import FEATURES_BY_NAME
from scoring.health import SCORE_COLUMNS, load_rules, score_frame
from scoring.health.composite import band, colour, grade, score_composite, status
from scoring.health.dimensions import score_dimensions
from scoring.health.examples import AT_RISK, HEALTHY, feature_frame
from scoring.health.normalise import score_values
from scoring.health.profiles import SCORED_DIMENSIONS, Normalisation
from scoring.health.trend import classify_trend

ALL = frozenset(t.name for t in TABLES)
RULES = load_rules()
DEFAULT = RULES.default
SCORED = sorted({f for p in RULES.all_profiles for d in p.normalisations.values() for f in d})


# --- normalisation -----------------------------------------------------------------------------
def test_piecewise_linear_between_points_and_clamped_outside():
    norm = Normalisation(points=((0, 0), (10, 50), (20, 100)))
    got = score_values(np.array([-5, 0, 5, 10, 15, 20, 99, np.nan]), norm, True)
    assert got[:7].tolist() == [0, 0, 25, 50, 75, 100, 100]
    assert np.isnan(got[7])


def test_lower_is_healthier_features_score_high_when_low():
    got = score_values(np.array([0, 5, 10]), Normalisation(thresholds=(0, 10)), False)
    assert got.tolist() == [100, 50, 0]


# --- dimensions --------------------------------------------------------------------------------
def test_a_dimension_is_the_weighted_mean_of_its_available_features():
    row = HEALTHY | {"nps_last": 6, "nps_avg_365d": np.nan, "csat_avg_90d": 4}
    dims = score_dimensions(feature_frame([row]), ALL, DEFAULT)
    # nps_last 6 -> 40, csat 4 -> 80, by their weights; the missing average is left out.
    w = {k: v.weight for k, v in DEFAULT.normalisations["satisfaction"].items()}
    expected = (w["nps_last"] * 40 + w["csat_avg_90d"] * 80) / (w["nps_last"] + w["csat_avg_90d"])
    assert dims["satisfaction"].iloc[0] == pytest.approx(expected)


def test_a_dimension_with_no_data_is_missing_not_zero_or_fifty():
    row = HEALTHY | {"nps_last": np.nan, "nps_avg_365d": np.nan, "csat_avg_90d": np.nan}
    dims = score_dimensions(feature_frame([row]), ALL, DEFAULT)
    assert np.isnan(dims["satisfaction"].iloc[0])


def test_a_not_connected_source_is_missing_whatever_the_frame_holds():
    dims = score_dimensions(feature_frame([HEALTHY]), ALL - {"surveys"}, DEFAULT)
    assert np.isnan(dims["satisfaction"].iloc[0])
    assert not np.isnan(dims["engagement"].iloc[0])


def test_zero_counts_over_a_connected_table_are_data_not_missing():
    row = {k: v for k, v in HEALTHY.items() if FEATURES_BY_NAME[k].source != "tickets"}
    row |= {"tickets_90d": 0, "urgent_tickets_90d": 0, "escalations_90d": 0,
            "reopened_tickets_90d": 0, "open_tickets": 0}
    dims = score_dimensions(feature_frame([row]), ALL, DEFAULT)
    assert dims["support"].iloc[0] == 100


def test_value_reads_the_commercial_features():
    good = score_dimensions(feature_frame([HEALTHY]), ALL, DEFAULT)["value"].iloc[0]
    bad = score_dimensions(feature_frame([HEALTHY | {"failed_payments_90d": 3,
                                                     "overdue_invoices": 3}]),
                           ALL, DEFAULT)["value"].iloc[0]
    assert good > 90 > bad


# --- composite, grades, bands ------------------------------------------------------------------
def test_composite_redistributes_missing_weight_and_reports_coverage():
    dims = pd.DataFrame({"support": [80.0], "satisfaction": [np.nan], "value": [50.0]})
    score, cov = score_composite(dims, {"support": 25, "satisfaction": 20, "value": 10})
    assert score[0] == pytest.approx((25 * 80 + 10 * 50) / 35)
    assert cov[0] == pytest.approx(35 / 55)


def test_scores_are_read_as_the_whole_number_people_see():
    s = np.array([80.5, 80.49, 60.5, 59.49, 30.5, 30.49, np.nan])
    assert list(band(s, DEFAULT)) == ["Champion", "Healthy", "Healthy", "Needs Attention",
                                      "Needs Attention", "At Risk", None]
    assert list(colour(s, DEFAULT)) == ["green", "green", "yellow", "red", "red", "red", None]
    assert list(grade(np.array([95, 89.4, 80, 70, 60, 59.4]), DEFAULT)) == [
        "A", "B", "B", "C", "D", "F"]


def test_status_follows_the_score_and_churn_overrides_it():
    s = np.array([90.0, 45.0, 10.0, 90.0])
    churned = np.array([False, False, False, True])
    assert list(status(s, churned, DEFAULT)) == ["healthy", "at-risk", "critical", "churned"]


# --- score_frame -------------------------------------------------------------------------------
def test_score_frame_returns_one_row_per_input_row_in_order():
    frame = feature_frame([AT_RISK | {"account_id": "b"}, HEALTHY | {"account_id": "a"}])
    out = score_frame(frame, ALL, RULES)
    assert tuple(out.columns) == SCORE_COLUMNS
    assert list(out["account_id"]) == ["b", "a"]
    assert out["score"].iloc[1] > 80 > 40 > out["score"].iloc[0]
    assert list(out["band"]) == ["At Risk", "Champion"]
    assert set(out["config_version"]) == {RULES.config_version}
    assert list(out["profile"]) == ["default", "default"]


def test_removing_surveys_makes_satisfaction_missing_and_renormalises_the_rest():
    frame = feature_frame([HEALTHY, AT_RISK])
    full = score_frame(frame, ALL, RULES)
    without = score_frame(frame, ALL - {"surveys"}, RULES)
    assert without["dim_satisfaction"].isna().all()
    assert all(m == ["satisfaction"] for m in without["missing"])
    w = DEFAULT.weights
    assert without["coverage"].iloc[0] == pytest.approx(1 - w["satisfaction"] / sum(w.values()))
    others = [d for d in SCORED_DIMENSIONS if d != "satisfaction"]
    expected = sum(full[f"dim_{d}"] * w[d] for d in others) / sum(w[d] for d in others)
    assert without["score"].to_numpy() == pytest.approx(expected.to_numpy())


def test_nothing_connected_gives_no_score_and_zero_coverage():
    out = score_frame(feature_frame([HEALTHY]), frozenset({"accounts"}), RULES)
    assert np.isnan(out["score"].iloc[0]) and out["coverage"].iloc[0] == 0
    assert out["band"].iloc[0] is None
    assert out["missing"].iloc[0] == list(SCORED_DIMENSIONS)


def test_a_churned_account_has_status_churned_from_its_churn_day_on():
    # as of 2025-06-01: churned before it, on it (any hour), and the day after
    frame = feature_frame([HEALTHY] * 4).assign(churned_at=pd.to_datetime(
        ["2025-05-20 00:00", "2025-06-01 00:00", "2025-06-01 18:00", "2025-06-02 00:00"]))
    assert list(score_frame(frame, ALL, RULES)["status"]) == [
        "churned", "churned", "churned", "healthy"]


def test_a_missing_feature_column_is_a_clear_error():
    frame = feature_frame([HEALTHY]).drop(columns=["nps_last"])
    with pytest.raises(KeyError, match="nps_last"):
        score_frame(frame, ALL, RULES)


def test_segment_profiles_apply_their_own_thresholds():
    row = HEALTHY | {"tickets_90d": 10, "urgent_tickets_90d": 2, "open_tickets": 4}
    out = score_frame(feature_frame([row | {"segment": "enterprise"},
                                     row | {"segment": "mid-market"}]), ALL, RULES)
    assert list(out["profile"]) == ["enterprise", "default"]
    # Ten tickets a quarter is routine for an enterprise account, a lot for a mid-market one.
    assert out["dim_support"].iloc[0] > out["dim_support"].iloc[1]


# --- trend -------------------------------------------------------------------------------------
def test_trend_uses_a_dead_band():
    got = classify_trend(np.array([70, 70, 70, 70, 70]), np.array([60, 67, 73, 80, np.nan]), 3.0)
    assert list(got) == ["improving", "stable", "stable", "declining", None]


def test_previous_scores_match_the_date_n_days_earlier():
    frame = feature_frame([HEALTHY | {"account_id": "a", "as_of": "2025-06-08"},
                           HEALTHY | {"account_id": "a", "as_of": "2025-06-15"}])
    previous = pd.DataFrame({"account_id": ["a", "a"], "score": [50.0, 96.0],
                             "as_of": pd.to_datetime(["2025-06-01", "2025-06-08"])})
    out = score_frame(frame, ALL, RULES, previous)
    assert list(out["previous_score"]) == [50.0, 96.0]
    assert list(out["trend"]) == ["improving", "stable"]


# --- properties --------------------------------------------------------------------------------
def _value(name: str) -> st.SearchStrategy[float]:
    spec = FEATURES_BY_NAME[name]
    if spec.kind == "pct_change":
        body = st.floats(-100.0, 500.0)
    elif spec.kind == "change":
        body = st.floats(-20.0, 20.0)
    elif spec.kind in ("ratio", "flag"):
        body = st.floats(0.0, 1.0)
    elif spec.kind == "mean":
        body = st.floats(-1.0, 10.0)
    else:
        body = st.floats(0.0, 1000.0)
    return st.one_of(st.just(float("nan")), body)


ROWS = st.fixed_dictionaries(
    {name: _value(name) for name in SCORED}
    | {"segment": st.sampled_from(["enterprise", "mid-market", "smb", None])}
)
SOURCES = st.sets(st.sampled_from(sorted(ALL - {"accounts"})))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROWS, min_size=1, max_size=5), connected=SOURCES)
def test_score_is_always_within_0_and_100(rows, connected):
    out = score_frame(feature_frame(rows), frozenset(connected), RULES)
    scored = out["score"].notna()
    assert ((out.loc[scored, "score"] >= 0) & (out.loc[scored, "score"] <= 100)).all()
    assert (out.loc[~scored, "coverage"] == 0).all()
    dims = out[[f"dim_{d}" for d in SCORED_DIMENSIONS]].to_numpy()
    assert np.all(np.isnan(dims) | ((dims >= 0) & (dims <= 100)))
    assert ((out["coverage"] >= 0) & (out["coverage"] <= 1 + 1e-12)).all()


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0, 100), min_size=7, max_size=7),
    weights=st.lists(st.floats(0.1, 50), min_size=7, max_size=7),
    missing=st.sets(st.sampled_from(SCORED_DIMENSIONS), max_size=6),
)
def test_composite_renormalises_over_any_subset_of_missing_dimensions(values, weights, missing):
    dims = pd.DataFrame({d: [np.nan if d in missing else v]
                         for d, v in zip(SCORED_DIMENSIONS, values, strict=True)})
    w = dict(zip(SCORED_DIMENSIONS, weights, strict=True))
    score, cov = score_composite(dims, w)
    present = [d for d in SCORED_DIMENSIONS if d not in missing]
    expected = sum(w[d] * dims[d].iloc[0] for d in present) / sum(w[d] for d in present)
    assert score[0] == pytest.approx(expected)
    assert cov[0] == pytest.approx(sum(w[d] for d in present) / sum(w.values()))
    # Scaling every weight changes nothing: weights are normalised automatically.
    assert score_composite(dims, {d: 3 * x for d, x in w.items()})[0][0] == pytest.approx(score[0])


FEATURE_IN_DIMENSION = st.sampled_from([
    (p.name, dim, name) for p in RULES.all_profiles
    for dim, feats in p.normalisations.items() for name in feats
])


@settings(max_examples=200, deadline=None)
@given(base=ROWS, which=FEATURE_IN_DIMENSION, a=st.floats(-2, 2000), b=st.floats(-2, 2000))
def test_moving_a_feature_toward_healthy_never_lowers_its_dimension(base, which, a, b):
    profile_name, dim, name = which
    profile = RULES.profile(profile_name)
    lo, hi = min(a, b), max(a, b)
    healthy_first = FEATURES_BY_NAME[name].higher_is_healthier
    worse, better = (lo, hi) if healthy_first else (hi, lo)
    frame = feature_frame([base | {name: worse}, base | {name: better}])
    dims = score_dimensions(frame, ALL, profile)[dim]
    assert dims.iloc[1] >= dims.iloc[0] - 1e-9
    composite, _ = score_composite(score_dimensions(frame, ALL, profile), profile.weights)
    assert composite[1] >= composite[0] - 1e-9
