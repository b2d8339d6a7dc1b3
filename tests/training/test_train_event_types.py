"""Churn models learn a customer's own event types: on a generated world whose declared event
types raise, lower or do not move churn (`features.synth.params.EXAMPLE_EVENT_TYPES`), the
strongest types are among the model's top factors, the raising types raise the risk of the
accounts that do them often and the lowering type lowers it, and the model comes within 0.03
ROC AUC of the oracle (the best forecast the data allows: the intent as the counts show it and
the latent state as the features show it, `oracle_probability` with
`training.oracle.estimate_state`).

The world has 3,000 accounts (2,307 of its 25,507 snapshot rows churn within 90 days): at 1,200 the
gap is about 0.05, what learning the churn mapping from fewer labels costs;
bench/bench_event_types.py measures the gap on more seeds and sizes (bench/RESULTS.md)."""

from datetime import date

import pandas as pd
import pytest

from features.registry import EVENT_TYPE_PREFIX, event_slug
from features.settings import FeatureConfig
from features.synth.generate import generate_world
from features.synth.params import EXAMPLE_EVENT_TYPES
from scoring.bundle import encode_frame
from tests.support.feature_frames import warehouse
from tests.support.train_frames import shared_once, suite_training
from training.datasets import as_of_dates, build_training_set
from training.model import monotone_constraints
from training.pipeline import train_and_backtest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train-event-types")]
LABEL = "churn_90d"
CFG = suite_training(horizons=(90,), targets=("churn",), max_trees=200, num_leaves=(8,))
RAISING = [event_slug(t.name) for t in EXAMPLE_EVENT_TYPES if t.churn_effect > 0]
LOWERING = [event_slug(t.name) for t in EXAMPLE_EVENT_TYPES if t.churn_effect < 0]
STRONGEST = [event_slug(t.name) for t in EXAMPLE_EVENT_TYPES
             if abs(t.churn_effect) == max(abs(u.churn_effect) for u in EXAMPLE_EVENT_TYPES)]


def _build(_root):
    w = generate_world(3000, date(2024, 1, 1), 570, seed=3, event_types=EXAMPLE_EVENT_TYPES)
    con = warehouse(w.tables)
    dates = as_of_dates(con, None, None, CFG.as_of_frequency, CFG.horizons)
    ts = build_training_set(con, dates, FeatureConfig(), CFG.horizons)
    return ts.features, train_and_backtest(ts, CFG, truth=w.truth, logistic=False)[LABEL]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_once(tmp_path_factory, "train-event-types", _build)


def _contributions(result) -> pd.DataFrame:
    b = result.bundle
    X = encode_frame(result.test_frame, b.features, b.categories)
    return pd.DataFrame(b.booster.predict(X, pred_contrib=True)[:, :-1], columns=b.features,
                        index=result.test_frame.index)


def test_the_declared_types_are_among_the_built_features(trained):
    features, _ = trained
    for t in EXAMPLE_EVENT_TYPES:
        assert f"event_{event_slug(t.name)}_per_active_day_30d" in features


def test_event_type_features_are_left_free_of_monotone_constraints(trained):
    features, _ = trained
    constraints = dict(zip(features, monotone_constraints(features, LABEL, CFG), strict=True))
    assert constraints["logins_30d"] == -1  # the product's own: more logins, less risk
    assert {constraints[f] for f in features if f.startswith(EVENT_TYPE_PREFIX)} == {0}


def test_churn_raising_types_are_top_factors_that_raise_the_risk_of_their_users(trained):
    _, result = trained
    contrib = _contributions(result)
    by_type = {slug: contrib[[c for c in contrib.columns if c.startswith(f"event_{slug}_")]]
               .sum(axis=1) for slug in RAISING + LOWERING}
    # the types' features, taken together, rank against every other single feature
    strength = pd.concat([contrib.abs().mean(), pd.Series(
        {f"type {s}": v.abs().mean() for s, v in by_type.items()})]).sort_values(
            ascending=False)
    top = list(strength.index[:5])
    for slug in STRONGEST:
        assert f"type {slug}" in top, (slug, top)
    rows = result.test_frame
    for slug, sign in [*((s, 1) for s in RAISING), *((s, -1) for s in LOWERING)]:
        usage = rows[f"event_{slug}_per_active_day_30d"]
        often, seldom = usage >= usage.quantile(0.75), usage <= usage.quantile(0.25)
        assert sign * by_type[slug][often].mean() > 0, slug
        assert sign * by_type[slug][seldom].mean() < 0, slug


def test_the_model_comes_within_003_of_the_oracle(trained):
    """The oracle reads the state each row's data came from (`oracle_probability`), not the
    path after the as-of date: the intent as the event counts show it, the health, shock and
    plan state as the features show it (`training.oracle.estimate_state`)."""
    _, with_types = trained
    auc = {k: v["roc_auc"] for k, v in with_types.pooled.items()}
    assert auc["oracle"] > auc["model"], auc
    assert auc["model"] >= auc["oracle"] - 0.03, auc
