"""Who is scored as what on the as-of day: an account is active from its signup day on and
until the day before it churns; one that churns on the as-of day is churned that day, not an
active account about to churn. Scoring, training's entities and its labels follow one rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.entities import build_entities
from scoring.health import load_rules
from scoring.pipeline import Scorer, score_accounts
from tests.support.feature_frames import hand_tables, warehouse
from training.labels import build_labels

AS_OF = pd.Timestamp("2024-04-01")


def boundary_world():
    """Account b churns on the as-of day; d signs up on it; c signs up later (June)."""
    tables = hand_tables()
    acc = tables["accounts"]
    new = acc.iloc[[0]].assign(account_id="d", name="Delta",
                               created_at=pd.Timestamp("2024-04-01 09:30"))
    tables["accounts"] = pd.concat([acc, new], ignore_index=True).astype(acc.dtypes)
    tables["churn_events"] = pd.DataFrame({
        "account_id": ["b"], "churned_at": pd.to_datetime(["2024-04-01 00:00"]),
        "reason": [None]}).astype(tables["churn_events"].dtypes)
    return warehouse(tables)


def test_statuses_on_the_as_of_day_follow_the_one_rule():
    con = boundary_world()
    scored = score_accounts(con, ["a", "b", "c", "d"], AS_OF, Scorer(rules=load_rules()),
                            trend=False)
    status = dict(zip(scored.account_ids, scored.scores["account_status"], strict=True))
    assert status == {"a": "active", "b": "churned", "c": "not-started", "d": "active"}
    # the account that starts on the as-of day is scored, with a tenure of 0 days
    d = scored.account("d")
    assert d.score["score"] == d.score["score"]  # not NaN
    assert d.features.loc[0, "tenure_days"] == 0
    portfolio = score_accounts(con, None, AS_OF, Scorer(rules=load_rules()), trend=False)
    assert sorted(portfolio.account_ids) == ["a", "d"]


def test_training_entities_and_labels_follow_the_same_rule():
    con = boundary_world()
    ents = build_entities(con, [AS_OF, AS_OF - pd.Timedelta(days=1)])
    got = {(a, str(t.date())) for a, t in zip(ents["account_id"], ents["as_of"], strict=True)}
    assert got == {("a", "2024-04-01"), ("d", "2024-04-01"),
                   ("a", "2024-03-31"), ("b", "2024-03-31")}
    # b churning on the as-of day is no easy positive: it has no label that day; the day
    # before, the churn is inside its horizon
    rows = pd.DataFrame({"account_id": ["b", "b"],
                         "as_of": [AS_OF, AS_OF - pd.Timedelta(days=1)]})
    y = build_labels(con, rows, horizons=(30,), end=pd.Timestamp("2024-07-01"))
    assert np.isnan(y.loc[0, "churn_30d"]) and y.loc[1, "churn_30d"] == 1.0
