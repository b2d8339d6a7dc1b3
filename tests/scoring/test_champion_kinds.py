"""A logistic-regression or rules-score champion is a bundle like LightGBM's: it saves and
loads as numbers (no sklearn at serving), predicts through the model set, and its factors add
up exactly to its log-odds (coefficient times standardised deviation; the rules' own feature
shares)."""

import numpy as np
import pandas as pd
import pytest

from features.registry import FEATURE_SET_VERSION, FEATURES
from scoring.bundle import load_bundle, save_bundle
from scoring.health import load_rules
from scoring.health.examples import random_features
from scoring.health.scoring import score_frame
from scoring.model_set import model_set
from training.selection import fit_logistic, fit_rules_model

FEATURE_NAMES = [f.name for f in FEATURES]


@pytest.fixture(scope="module")
def frame():
    f = random_features(400, seed=1)
    score = score_frame(f, frozenset({"usage_events", "subscriptions", "invoices"}),
                        load_rules())["score"]
    p = 1 / (1 + np.exp((score.fillna(50).to_numpy() - 50) / 10))
    f["churn_30d"] = (np.random.default_rng(2).uniform(size=len(f)) < p).astype(float)
    return f


@pytest.fixture(scope="module")
def bundles(frame, tmp_path_factory):
    from training.settings import TrainingConfig

    cfg = TrainingConfig()
    train, valid = frame.iloc[:300], frame.iloc[300:]
    logistic = fit_logistic(train, valid, FEATURE_NAMES, "churn_30d", cfg, FEATURE_SET_VERSION)
    connected = frozenset({"usage_events", "subscriptions", "invoices"})
    rules = fit_rules_model(frame, score_frame(frame, connected, load_rules())["score"],
                            FEATURE_NAMES, "churn_30d", load_rules(), connected,
                            FEATURE_SET_VERSION)
    root = tmp_path_factory.mktemp("kinds")
    return {kind: load_bundle(save_bundle(b, root / kind))
            for kind, b in (("logistic", logistic), ("rules", rules))}, \
        {"logistic": logistic, "rules": rules}


@pytest.mark.parametrize("kind", ["logistic", "rules"])
def test_a_saved_champion_loads_as_its_kind_and_predicts_the_same(kind, bundles, frame):
    loaded, fitted = bundles
    assert loaded[kind].kind == kind
    rows = frame.head(30)
    assert np.allclose(loaded[kind].predict_proba(rows), fitted[kind].predict_proba(rows))


@pytest.mark.parametrize("kind", ["logistic", "rules"])
def test_factors_add_up_to_the_log_odds_through_the_model_set(kind, bundles, frame):
    loaded, _ = bundles
    models = model_set({"churn_30d": loaded[kind]})
    rows = frame.head(5).reset_index(drop=True)
    matrices = models.matrices(rows)
    contrib = models.contributions(matrices)["churn_30d"]
    raw = models.raw(matrices)["churn_30d"]
    assert contrib.shape == (5, len(FEATURE_NAMES) + 1)
    assert np.allclose(contrib.sum(axis=1), raw)
    probs = models.probabilities(matrices)["churn_30d"]
    assert np.allclose(probs, loaded[kind].calibrator.apply(raw))


def test_the_rules_champion_ranks_as_the_rules_score(bundles, frame):
    loaded, _ = bundles
    b = loaded["rules"]
    assert b.booster.a < 0  # churn: a lower score is a higher risk
    score = score_frame(frame, b.booster.connected, load_rules())["score"].to_numpy()
    p = b.predict_proba(frame)
    have = ~np.isnan(score)
    assert pd.Series(p[have]).corr(pd.Series(score[have]), method="spearman") < -0.99


def test_the_explanation_path_explains_a_logistic_and_a_rules_champion_together(bundles, frame):
    from dataclasses import replace

    from serving.explain import analyze_features

    loaded, _ = bundles
    models = {"churn_30d": loaded["logistic"], "churn_60d": replace(loaded["rules"],
                                                                    label="churn_60d")}
    row = frame.drop(columns=["churn_30d"]).head(1)
    analysis = analyze_features(row, loaded["rules"].booster.connected, load_rules(), models,
                                max_candidates=2)
    assert set(analysis.probabilities) == {"churn_30d", "churn_60d"}
    assert analysis.probabilities["churn_30d"] <= analysis.probabilities["churn_60d"]
    for m in analysis.models:
        assert m.positive or m.negative or m.missing or m.profile
        assert np.isfinite(m.raw_log_odds)
