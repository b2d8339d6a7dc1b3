"""Did it work: nearest-neighbour matching recovers a known effect where the naive comparison is
biased, the bias correction takes off what distant matches leave, the contract's timing is read
from the features at the start date, it says so plainly when the groups cannot be matched, and
on a generated world with a known true effect the truth lies inside the 95% interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.effect import CONTRACT, effect_units, estimate_effect, match_nearest


def confounded(n: int = 2000, effect: float = -0.15, seed: int = 0) -> pd.DataFrame:
    """Low scores are treated more often and churn more: naive is biased upwards."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 100, n)
    treated = rng.random(n) < 1 / (1 + np.exp((score - 40) / 10))
    base = 0.6 - 0.005 * score
    churned = (rng.random(n) < np.clip(base + effect * treated, 0, 1)).astype(float)
    return pd.DataFrame({"account_id": [f"a{i}" for i in range(n)], "as_of": "2025-01-01",
                         "treated": treated, "score": score, "churned": churned})


def test_matching_removes_the_bias_of_the_naive_difference():
    units = confounded()
    est = estimate_effect(units, ["score"], "churned", caliper=0.2, bootstraps=400)
    assert est.naive > 0.0  # treated churn more: they were worse off to begin with
    assert est.low <= -0.15 <= est.high
    assert est.effect < est.naive - 0.1
    assert est.pairs == est.treated and not est.warnings


def test_the_bias_correction_takes_off_what_distant_matches_leave():
    """Treated accounts crowd the low scores where few untreated ones are: their matches sit
    higher, churn less, and the plain matched difference overstates the effect; the regression
    of the outcome on the inputs among the untreated corrects it."""
    rng = np.random.default_rng(5)
    score = np.r_[rng.uniform(0, 40, 300), rng.uniform(20, 100, 900)]
    treated = np.arange(len(score)) < 300
    churned = 0.8 - 0.008 * score - 0.1 * treated + rng.normal(0, 0.05, len(score))
    units = pd.DataFrame({"as_of": "2025-01-01", "treated": treated, "score": score,
                          "churned": churned})
    plain = estimate_effect(units, ["score"], "churned", caliper=5.0, neighbours=4,
                            bootstraps=50, bias_correct=False)
    fixed = estimate_effect(units, ["score"], "churned", caliper=5.0, neighbours=4,
                            bootstraps=200)
    assert abs(fixed.effect + 0.1) < 0.01 < abs(plain.effect + 0.1)
    assert fixed.low <= -0.1 <= fixed.high


def test_the_contract_timing_comes_from_the_features_at_the_start_date():
    day = pd.Timestamp("2025-01-01")
    scores = pd.DataFrame({"account_id": ["a", "b", "c"], "as_of": [day] * 3,
                           "score": [40.0, 45.0, 80.0],
                           "flags": [[{"code": "renewal_soon"}], [], []]})
    features = pd.DataFrame({"account_id": ["a", "b", "c"], "as_of": [day] * 3,
                             "days_to_renewal": [20.0, 200.0, np.nan],
                             "contract_term_days": [365.0, 365.0, 30.0],
                             "auto_renew": [1.0, 0.0, 1.0], "tenure_days": [400.0, 90.0, 30.0]})
    starts = pd.DataFrame({"account_id": ["a"], "as_of": [day]})
    units = effect_units(scores, starts, None, day, 90, features=features)
    assert units["treated"].tolist() == [True, False, False]
    assert units["flag_renewal_soon"].tolist() == [1.0, 0.0, 0.0]
    assert units["days_to_renewal"].tolist()[:2] == [20.0, 200.0]
    assert units["tenure_days"].tolist() == [400.0, 90.0, 30.0]
    bare = effect_units(scores, starts, None, day, 90)
    assert bare[list(CONTRACT)].isna().all().all()


def test_matches_stay_within_their_start_date():
    units = pd.concat([confounded(200, seed=1).assign(as_of="2025-01-01"),
                       confounded(200, seed=2).assign(as_of="2025-02-01")], ignore_index=True)
    m = match_nearest(units, ["score"], caliper=1.0, neighbours=3)
    assert (units["as_of"].to_numpy()[m.treated] == units["as_of"].to_numpy()[m.control]).all()
    assert not units["treated"].to_numpy()[m.control].any()
    # Each treated account weighs one whatever its number of matches.
    weights = pd.Series(m.weight).groupby(m.treated).sum()
    assert np.allclose(weights, 1.0) and len(weights) == units["treated"].sum()


def test_plain_warnings_when_the_groups_cannot_be_matched():
    rng = np.random.default_rng(3)
    units = pd.DataFrame({"as_of": "2025-01-01", "treated": [True] * 10 + [False] * 50,
                          "score": np.r_[rng.uniform(0, 10, 10), rng.uniform(60, 100, 50)],
                          "churned": rng.integers(0, 2, 60).astype(float)})
    est = estimate_effect(units, ["score"], "churned", caliper=0.2, min_pairs=20)
    text = " ".join(est.warnings)
    assert "poor overlap" in text and "too few matched pairs" in text
    assert est.pairs == 0 and est.effect is None


@pytest.mark.slow
def test_on_a_world_with_a_known_effect_the_truth_is_inside_the_interval():
    from training.effect_check import effect_on_world

    out = effect_on_world(700, seed=7, bootstraps=500)
    truth, est = out["truth"]["effect"], out["estimate"]
    assert truth < -0.02  # the playbook really lowers churn
    assert est.low <= truth <= est.high
    # Treated accounts were picked for a renewal, where churn happens: the naive
    # difference hides the effect.
    assert est.naive - truth > 0.03
    assert est.pairs >= 30


def test_the_service_reads_the_contract_timing_from_the_frame_scored_at_each_start(monkeypatch):
    """`serving.effect.playbook_effect` asks the scored portfolio of each start date (the
    service's per-snapshot frame) for the contract's timing and matches on it."""
    from types import SimpleNamespace

    import serving.effect as effect

    rng = np.random.default_rng(9)
    n, day = 240, pd.Timestamp("2025-01-01")
    ids = [f"a{i}" for i in range(n)]
    dims = {f"dim_{d}": rng.uniform(0, 100, n) for d in
            ("engagement", "adoption", "usage", "support", "satisfaction", "value",
             "relationship")}
    start = pd.DataFrame({"account_id": ids, "as_of": day, "score": rng.uniform(0, 100, n),
                          "profile": "default", "flags": [[] for _ in ids], **dims})
    later = start.assign(as_of=day + pd.Timedelta(days=90), score=start["score"] + 1.0)
    renewal = rng.uniform(0, 365, n)
    features = pd.DataFrame({"account_id": ids, "as_of": day, "days_to_renewal": renewal,
                             "contract_term_days": 365.0, "auto_renew": 1.0,
                             "tenure_days": rng.uniform(100, 900, n)})
    treated = [a for a, r in zip(ids, renewal, strict=True) if r < 120][:40]
    asked: list[object] = []
    monkeypatch.setattr(effect, "treated_starts", lambda store, playbook: (
        pd.DataFrame({"account_id": treated, "as_of": day}), set(treated)))
    monkeypatch.setattr(effect, "outcome_events", lambda con, target: pd.DataFrame(
        {"account_id": ids[:20], "at": day + pd.Timedelta(days=10)}))
    monkeypatch.setattr(effect, "today", lambda con: (day + pd.Timedelta(days=120)).date())
    store = SimpleNamespace(load_scores=lambda: pd.concat([start, later], ignore_index=True))
    health = SimpleNamespace(effect_horizon_days=90, effect_caliper=1.0, effect_min_pairs=5,
                             effect_bootstraps=50, effect_neighbours=4)

    def scored_at(when):
        asked.append(when)
        return SimpleNamespace(features=features)

    out = effect.playbook_effect(store, None, health, scored_at=scored_at)
    assert asked == [day.date()]
    churn, change = out["estimates"]
    assert churn["treated"] == 40 and churn["pairs"] > 30
    assert "days_to_renewal" in churn["balance"] and change["effect"] == pytest.approx(0.0)
