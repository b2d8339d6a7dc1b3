"""Did it work: nearest-neighbour matching recovers a known effect where the naive comparison is
biased, says so plainly when the groups cannot be matched, and on a generated world with a
known true effect the truth lies inside the 95% interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.effect import estimate_effect, match_nearest


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


def test_matches_stay_within_their_start_date():
    units = pd.concat([confounded(200, seed=1).assign(as_of="2025-01-01"),
                       confounded(200, seed=2).assign(as_of="2025-02-01")], ignore_index=True)
    m = match_nearest(units, ["score"], caliper=1.0)
    assert (units["as_of"].to_numpy()[m.treated] == units["as_of"].to_numpy()[m.control]).all()
    assert not units["treated"].to_numpy()[m.control].any()


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
    # Treated accounts were picked for low health: the naive difference hides the effect.
    assert est.naive - truth > 0.03
    assert est.pairs >= 30
