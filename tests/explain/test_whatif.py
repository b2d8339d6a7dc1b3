"""What-if on a trained model: only actionable features move, suggestions lower the churn
probability (smallest change first), the numbers are recomputed by the same models and rules,
and every candidate row of a model is scored in one predict call."""

from __future__ import annotations

import numpy as np
import pytest

from features.registry import feature
from scoring.model_set import model_set
from serving.explain import analyze_features, what_if
from serving.explain_words import load_explain_words
from serving.whatif import (
    MAX_CANDIDATES,
    Lever,
    WhatIfError,
    best_candidates,
    candidates,
    check_changes,
    levers_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("explain")]


@pytest.fixture(scope="module")
def analyses(explain_world, population):
    """The first 250 active accounts analysed (what-if included)."""
    return [analyze_features(population.features.iloc[[i]], population.connected,
                             explain_world.rules, explain_world.bundles, peers=population.peers)
            for i in range(min(250, len(population.features)))]


def test_levers_only_move_actionable_features(explain_world, population):
    seen: set[str] = set()
    for i in range(len(population.features)):
        values = dict(population.features.iloc[i].items())
        group = population.peers.group(values["segment"])
        for lever in levers_for(values, population.connected, group, group.name):
            for name in lever.changes:
                assert feature(name).actionable, (lever.code, name)
            seen.add(lever.code)
    assert {"exec_touch", "check_in", "reactivate", "adopt_features"} <= seen


def test_suggestions_lower_the_churn_probability_smallest_change_first(analyses):
    suggested = [a for a in analyses if a.what_if]
    assert len(suggested) >= 25
    for a in suggested:
        previous_size, previous_after = 0, a.probabilities["churn_90d"]
        for s in a.what_if:
            assert s.label == "churn_90d"
            assert s.before == pytest.approx(a.probabilities["churn_90d"])
            assert s.after < s.before
            assert len(s.levers) > previous_size and s.after < previous_after
            previous_size, previous_after = len(s.levers), s.after
            assert all(feature(name).actionable for name in s.changes)
            assert f"{s.before:.0%} -> {s.after:.0%}" in s.text
            # The probabilities are recomputed for every model, monotone across horizons.
            p = s.probabilities
            assert p["churn_30d"] <= p["churn_60d"] <= p["churn_90d"]


def test_a_suggestion_is_the_same_numbers_as_asking_what_if_with_its_changes(
        explain_world, population, analyses):
    a = next(a for a in analyses if len(a.what_if) >= 1 and a.what_if[0].score_after)
    s = a.what_if[0]
    row = population.row(a.account_id)
    again = what_if(row, s.changes, population.connected, explain_world.rules,
                    explain_world.bundles)
    assert again.probabilities == pytest.approx(s.probabilities)
    assert again.score_before == pytest.approx(a.score)
    assert again.score_after == pytest.approx(s.score_after)


def test_suggestions_read_as_a_csm_would_say_them(analyses):
    words = load_explain_words()
    texts = [s.text for a in analyses for s in a.what_if]
    touch = [t for t in texts if t.startswith((words.get("what_if.levers.exec_touch"),
                                               words.get("what_if.levers.check_in")))]
    assert touch, "some account is helped by an executive touch or a check-in call"
    assert all(": churn within 90 days " in t for t in texts)
    combined = [t for t in texts if words.get("what_if.join") in t.split(":")[0]]
    assert combined, "some suggestion combines two levers"


def test_what_if_refuses_features_a_csm_cannot_change(explain_world, population):
    row = population.row(population.pick())
    for name in ("tenure_days", "segment", "arr", "days_to_renewal"):
        with pytest.raises(WhatIfError, match=f"what-if change '{name}': not an actionable"):
            what_if(row, {name: 1.0}, population.connected, explain_world.rules,
                    explain_world.bundles)
    with pytest.raises(WhatIfError, match="'open_tickets': 'many' is not a number"):
        check_changes({"open_tickets": "many"})
    with pytest.raises(WhatIfError, match="'no_such_feature': unknown feature"):
        check_changes({"no_such_feature": 1})


def test_what_if_recomputes_the_rules_score_and_the_probabilities(explain_world, population):
    row = population.row(population.pick())
    base = analyze_features(row, population.connected, explain_world.rules,
                            explain_world.bundles)
    # Everyone active every day, many features adopted, no open tickets: healthier by rule.
    better = what_if(row, {"active_days_30d": 30, "days_since_last_activity": 1,
                           "features_used_30d": 14, "open_tickets": 0},
                     population.connected, explain_world.rules, explain_world.bundles)
    assert better.score_before == pytest.approx(base.score)
    assert better.score_after > better.score_before
    assert better.before == pytest.approx(base.probabilities["churn_90d"])
    assert set(better.probabilities) == set(base.probabilities)


def test_every_candidate_row_of_a_model_is_scored_in_one_predict_call(explain_world,
                                                                      population,
                                                                      monkeypatch):
    models = model_set(explain_world.bundles)
    for i in range(len(population.features)):  # an account with several candidates
        values = dict(population.features.iloc[i].items())
        group = population.peers.group(values["segment"])
        levers = levers_for(values, population.connected, group, group.name)
        if len(candidates(levers)) >= 5:
            break
    assert len(candidates(levers)) >= 5
    calls: dict[str, list[int]] = {}
    for e in models.entries:
        original = e.bundle.booster.predict

        def counting(X, *args, _label=e.label, _original=original, **kw):
            calls.setdefault(_label, []).append(len(X))
            return _original(X, *args, **kw)

        monkeypatch.setattr(e.bundle.booster, "predict", counting)
    best_candidates(models, models.row_matrices(values), levers)
    n = len(candidates(levers)) + 1
    assert calls == {label: [n] for label in models.labels}


def test_candidates_are_capped_and_never_mix_two_levers_of_one_group():
    levers = [Lever(f"l{i}", f"g{i % 4}", {"open_tickets": float(i)}) for i in range(8)]
    combos = candidates(levers)
    assert len(combos) == MAX_CANDIDATES
    assert [len(c) for c in combos] == sorted(len(c) for c in combos)
    assert all(len({lv.group for lv in c}) == len(c) for c in combos)
    assert len(candidates(levers, max_candidates=5)) == 5


def test_an_executive_touch_is_consistent_with_how_the_features_are_defined(population):
    values = {**dict(population.row(population.pick()).iloc[0].items()),
              "days_since_last_exec_touch": 200.0, "exec_touches_90d": 0.0,
              "touchpoints_30d": 2.0, "touchpoints_90d": 5.0, "days_since_last_touch": 40.0}
    lever = next(lv for lv in levers_for(values, population.connected)
                 if lv.code == "exec_touch")
    assert lever.changes == {"exec_touches_90d": 1.0, "days_since_last_exec_touch": 1.0,
                             "touchpoints_30d": 3.0, "touchpoints_90d": 6.0,
                             "days_since_last_touch": 1.0}
    tickets = [lv for lv in levers_for({**values, "open_tickets": 5.0}, population.connected)
               if lv.group == "tickets"]
    assert [(lv.code, lv.n, lv.changes["open_tickets"]) for lv in tickets] == [
        ("close_ticket", 1, 4.0), ("close_tickets", 2, 3.0), ("close_tickets", 5, 0.0)]
    # Nothing to touch when touchpoints are not connected.
    assert not [lv for lv in levers_for(values, population.connected - {"touchpoints"})
                if lv.group == "touch"]
    assert np.isfinite(list(lever.changes.values())).all()
