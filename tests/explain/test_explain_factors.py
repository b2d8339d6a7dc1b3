"""Model factors on a tiny hand-made model (fast): exact TreeSHAP adds up, factors split into
positive, negative, missing and who-the-customer-is, ranked by size, worded from the registry
and the wording file against the peer median."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.model_set import model_set
from serving.explain_words import load_explain_words
from serving.factors import additivity_error, explain_model
from serving.peers import build_peer_table
from tests.support.train_frames import snapshot_frame
from training.settings import TrainingConfig

FEATURES = ["logins_30d", "tickets_90d", "nps_last", "segment", "attr_tier"]
CONNECTED = frozenset({"accounts", "usage_events", "tickets", "surveys"})


@pytest.fixture(scope="module")
def models():
    from training.model import fit_model

    ts = snapshot_frame(n_accounts=300, n_dates=14, seed=3)
    frame = ts.frame
    dates = np.sort(frame["as_of"].unique())
    cfg = TrainingConfig(num_threads=1, max_trees=60, min_child_samples=20)
    bundles = {}
    for label in ("churn_90d", "expansion_90d"):
        rows = frame[frame[label].notna()]
        seen = np.sort(rows["as_of"].unique())
        parts = [rows[rows["as_of"].isin(p)] for p in (seen[:-4], seen[-4:-2], seen[-2:])]
        bundles[label] = fit_model(*parts, FEATURES, label, cfg, "1")
    return model_set(bundles), frame[frame["as_of"] == dates[-1]].reset_index(drop=True)


def explain_row(ms, frame: pd.DataFrame, i: int, label: str = "churn_90d", top_k: int = 5):
    """Row i of the last as-of date explained by one model, its segment as the peer group."""
    values = dict(frame.iloc[i].items())
    mats = ms.row_matrices(values)
    entry = ms.entry(label)
    contrib = ms.contributions(mats)[label][0]
    p = ms.probabilities(mats)[label][0]
    peers = build_peer_table(frame, min_size=5)
    return explain_model(entry, ms.encodings[entry.encoding].features, contrib, values, p,
                         load_explain_words(), connected=CONNECTED,
                         peers=peers.group(values["segment"]), group=str(values["segment"]),
                         top_k=top_k)


def test_contributions_add_up_to_the_raw_output_on_every_row(models):
    ms, frame = models
    mats = ms.matrices(frame)
    raw = ms.raw(mats)
    for label, contrib in ms.contributions(mats).items():
        assert additivity_error(contrib, raw[label]) < 1e-9


def test_factors_split_by_what_they_mean_for_the_account(models):
    ms, frame = models
    missing_nps = int(np.flatnonzero(frame["nps_last"].isna().to_numpy())[0])
    m = explain_row(ms, frame, missing_nps)
    assert all(f.contribution < 0 for f in m.positive)  # lower churn is good
    assert all(f.contribution > 0 for f in m.negative)
    assert [f.feature for f in m.missing] in ([], ["nps_last"])
    assert {f.feature for f in m.profile} <= {"segment", "attr_tier"}
    every = m.positive + m.negative + m.missing + m.profile
    assert sorted(f.rank for f in every) == list(range(1, len(every) + 1))
    assert m.raw_log_odds == pytest.approx(m.base_log_odds + sum(f.contribution for f in every))
    expansion = explain_row(ms, frame, missing_nps, "expansion_90d")
    assert all(f.contribution > 0 for f in expansion.positive)  # more expansion is good


def test_a_factor_sentence_has_the_value_and_the_peer_median(models):
    ms, frame = models
    m = explain_row(ms, frame, 0)
    logins = next(f for f in m.positive + m.negative if f.feature == "logins_30d")
    seg = str(frame["segment"].iloc[0])
    median = frame.loc[frame["segment"].astype(str) == seg, "logins_30d"].median()
    assert logins.peer_median == pytest.approx(median)
    assert logins.text == (f"User-days with any activity in the last 30 days (logins): "
                           f"{frame['logins_30d'].iloc[0]:,.0f} (peers in {seg}: {median:,.0f})")


def test_top_k_caps_each_group(models):
    ms, frame = models
    m = explain_row(ms, frame, 1, top_k=1)
    assert all(len(g) <= 1 for g in (m.positive, m.negative, m.missing, m.profile))


def test_a_customer_event_type_is_a_factor_worded_from_the_types_own_name():
    """A churn model trained on an event type's count (here: tickets renamed as
    `billing.downgrade_viewed`, whose events raise churn) explains it as a usage factor that
    raises the risk, in words naming the type; the what-if may move it."""
    from serving.whatif import check_changes
    from training.model import fit_model

    name = "event_billing_downgrade_viewed_90d"
    frame = snapshot_frame(n_accounts=300, n_dates=14, seed=3).frame.rename(
        columns={"tickets_90d": name})
    features = ["logins_30d", name, "nps_last", "segment"]
    rows = frame[frame["churn_90d"].notna()]
    seen = np.sort(rows["as_of"].unique())
    parts = [rows[rows["as_of"].isin(p)] for p in (seen[:-4], seen[-4:-2], seen[-2:])]
    cfg = TrainingConfig(num_threads=1, max_trees=60, min_child_samples=20)
    ms = model_set({"churn_90d": fit_model(*parts, features, "churn_90d", cfg, "1")})
    last = frame[frame["as_of"] == seen[-1]].reset_index(drop=True)
    i = int(last[name].to_numpy().argmax())
    factors = explain_row(ms, last, i).positive + explain_row(ms, last, i).negative
    factor = next(f for f in factors if f.feature == name)
    assert (factor.dimension, factor.direction) == ("usage", "raises")
    assert "'billing downgrade viewed' events in the last 90 days" in factor.text
    assert check_changes({name: 0}) == {name: 0.0}
