"""The opt-in intervention of the generator: off, the world is exactly the one generated without
it; on, treated accounts are picked by a rule that goes with more churn (a renewal due), only
their churn hazards change (by the known ratio, inside the window; the same path up to the
start), and the truth holds the untreated hazards beside them."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.synth.generate import generate_world, true_effect, write_world
from features.synth.params import Intervention

START = date(2024, 1, 1)


def test_off_is_byte_identical(tmp_path):
    plain = write_world(generate_world(120, START, 150, 5), tmp_path / "a")
    explicit = write_world(generate_world(120, START, 150, 5, intervention=None), tmp_path / "b")
    assert sorted(p.name for p in plain.values()) == sorted(p.name for p in explicit.values())
    for name, path in plain.items():
        assert path.read_bytes() == explicit[name].read_bytes(), name


@pytest.fixture(scope="module")
def worlds():
    iv = Intervention(start_day=100, hazard_ratio=0.5, duration=60, share=0.2, selection=2.0)
    return (generate_world(400, START, 200, 9),
            generate_world(400, START, 200, 9, intervention=iv), iv)


def test_treatment_cuts_only_the_treated_hazards_in_the_window(worlds):
    plain, treated_world, iv = worlds
    truth = treated_world.truth
    day = (truth["date"] - pd.Timestamp(START)).dt.days
    # Up to the start the world is the one without the intervention.
    early = (day < iv.start_day).to_numpy()
    assert (truth["churn_hazard"].to_numpy()[early]
            == plain.truth["churn_hazard"].to_numpy()[early]).all()
    picked = set(treated_world.intervention.loc[treated_world.intervention["treated"],
                                                "account_id"])
    inside = (day >= iv.start_day) & (day < iv.start_day + iv.duration)
    is_t = truth["account_id"].isin(picked)
    ratio = truth["churn_hazard"] / truth["untreated_churn_hazard"]
    assert np.allclose(ratio[inside & is_t & (truth["untreated_churn_hazard"] > 0)], 0.5)
    same = ~(inside & is_t)
    assert (truth.loc[same, "churn_hazard"] == truth.loc[same, "untreated_churn_hazard"]).all()


def test_treated_are_picked_for_more_churn_and_the_effect_is_known(worlds):
    """The rule (a renewal due) picks accounts that would churn more untreated: the naive
    comparison is biased against the playbook."""
    from features.synth.generate import oracle_probability

    _, world, iv = worlds
    start = pd.Timestamp(START) + pd.Timedelta(days=iv.start_day)
    churned = world.tables["churn_events"]
    gone = set(churned.loc[churned["churned_at"] < start, "account_id"])
    accounts = world.tables["accounts"]
    late = set(accounts.loc[accounts["created_at"] >= start, "account_id"])
    picked = world.intervention.set_index("account_id")["treated"]
    picked = picked[~picked.index.isin(gone | late)]  # the customers on the start day
    untreated = world.truth.drop(columns="churn_hazard").rename(
        columns={"untreated_churn_hazard": "churn_hazard"})
    ents = pd.DataFrame({"account_id": picked.index, "as_of": start})
    p0 = oracle_probability(untreated, ents, iv.duration).to_numpy()
    assert p0[picked.to_numpy()].mean() > p0[~picked.to_numpy()].mean()
    truth = true_effect(world, 60)
    assert truth["treated"] > 20
    assert truth["churn_treated"] < truth["churn_untreated"]
    assert truth["effect"] == pytest.approx(truth["churn_treated"] - truth["churn_untreated"])
