"""No leakage, proven: features as of T are a function of what was known before T.

On a small generated world (and on the hand-made tables, with hypothesis), features built as of
T must not change when every row dated at or after T is deleted from every table and every value
that only becomes known at or after T (a resolution or payment date, a ticket's CSAT before its
resolution, an invoice's payment status before it falls due) is replaced by another one.
"""

from __future__ import annotations

import functools
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.contract.tables import TABLES
from features.entities import build_entities
from features.event_types import event_types
from features.settings import FeatureConfig
from tests.support.feature_frames import US, T, entities, hand_tables, warehouse

pytestmark = pytest.mark.xdist_group("no-leakage")

CFG = FeatureConfig()
TIME_COLUMN = {t.name: t.time_column for t in TABLES} | {"accounts": "created_at"}


def known_before(tables: dict[str, pd.DataFrame], t: pd.Timestamp, seed: int = 0,
                 alter_end_dates: bool = False) -> dict[str, pd.DataFrame]:
    """The world as it could have looked at t: later rows gone, later values rewritten."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in tables.items():
        # Who is a customer at t is known through the as-of day (features/entities.py); the
        # features see only rows strictly before t.
        cut = t + pd.Timedelta(days=1) if name in ("accounts", "churn_events") else t
        frame = frame[frame[TIME_COLUMN[name]] < cut].copy()
        later = {"tickets": ["resolved_at"], "invoices": ["paid_at"],
                 "subscriptions": ["end_date"] if alter_end_dates else []}.get(name, [])
        for col in later:
            mask = (frame[col] >= t).to_numpy()
            shift = pd.to_timedelta(rng.integers(0, 400 * 24, mask.sum()), unit="h")
            frame.loc[mask, col] = (t + shift).astype(frame[col].dtype)
        if name == "tickets":
            # CSAT is asked at resolution: unknown for a ticket not resolved before t.
            pending = (frame["resolved_at"].isna() | (frame["resolved_at"] >= t)).to_numpy()
            frame.loc[pending, "csat"] = rng.integers(1, 6, pending.sum()).astype(float)
        if name == "invoices":
            # Whether a payment failed is known once the invoice is due.
            pending = (frame["due_at"] >= t).to_numpy()
            frame.loc[pending, "status"] = rng.choice(["paid", "open", "failed"], pending.sum())
        out[name] = frame
    return out


@pytest.fixture(scope="module")
def world():
    from features.synth.generate import generate_world

    return generate_world(80, date(2024, 1, 1), 420, seed=11).tables


@pytest.fixture(scope="module")
def world_con(world):
    return warehouse(world)


@pytest.fixture(scope="module")
def world_cfg(world_con):
    """The world's event types, decided once on the whole warehouse (as ingestion's warehouse
    decides them) and held fixed, so the test compares the values of the same columns."""
    types = tuple(t.slug for t in event_types(world_con, CFG))
    assert len(types) == CFG.top_event_types
    return CFG.model_copy(update={"event_types": types})


@pytest.mark.parametrize("as_of", ["2024-02-01", "2024-05-17", "2024-09-01", "2025-01-01"])
def test_deleting_the_future_and_rewriting_later_values_changes_no_feature(
    world, world_con, world_cfg, as_of
):
    t = pd.Timestamp(as_of)
    ents = build_entities(world_con, t)
    assert len(ents) > 20
    before = build_features(world_con, ents, world_cfg)
    assert (before.filter(like="event_").filter(like="_30d") > 0).any(axis=None)
    past = warehouse(known_before(world, t, seed=t.day))
    pd.testing.assert_frame_equal(build_entities(past, t), ents)
    after = build_features(past, ents, world_cfg)
    pd.testing.assert_frame_equal(after, before)


def test_a_contract_end_date_is_the_only_later_value_a_feature_may_read(world, world_con,
                                                                       world_cfg):
    """End dates are known when a contract starts (days_to_renewal and contract_term_days read
    them); rewriting them moves those two and nothing else."""
    t = pd.Timestamp("2024-09-01")
    ents = build_entities(world_con, t)
    before = build_features(world_con, ents, world_cfg)
    after = build_features(warehouse(known_before(world, t, alter_end_dates=True)), ents,
                           world_cfg)
    readers = ("days_to_renewal", "contract_term_days")
    others = [c for c in before.columns if c not in readers]
    pd.testing.assert_frame_equal(after[others], before[others])
    for name in readers:
        assert (after[name] != before[name]).any(), name


def test_the_generated_world_exercises_every_later_value(world):
    """Guard for the test above: the world has rows on both sides of T for each rewrite."""
    t = pd.Timestamp("2024-09-01")
    tickets, invoices = world["tickets"], world["invoices"]
    assert ((tickets["created_at"] < t) & (tickets["resolved_at"] >= t)).any()
    assert ((invoices["issued_at"] < t) & (invoices["paid_at"] >= t)).any()
    assert ((invoices["issued_at"] < t) & (invoices["due_at"] >= t)).any()
    for name, col in TIME_COLUMN.items():
        assert (world[name][col] >= t).any(), name


# --- hypothesis: random future rows and rewrites on the hand-made tables ----------------------
_future = st.integers(min_value=0, max_value=200 * 24 * 3600 * 10**6).map(
    lambda us: T + pd.Timedelta(microseconds=us)
)


def _future_rows(base: dict[str, pd.DataFrame], table: str, times: list[pd.Timestamp],
                 account: str) -> pd.DataFrame:
    """Copies of the table's first row for `account`, re-dated at each of `times`."""
    template = base[table].iloc[[0] * len(times)].copy()
    template["account_id"] = account
    template[TIME_COLUMN[table]] = pd.Series(times, dtype="datetime64[us]").to_numpy()
    return template


@functools.cache
def _hand_features_at_t() -> pd.DataFrame:
    return build_features(warehouse(hand_tables()), entities(("a", T), ("b", T)), CFG)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    tables=st.sets(st.sampled_from(["usage_events", "tickets", "surveys", "touchpoints",
                                    "subscriptions", "invoices"]), min_size=1),
)
def test_any_future_rows_and_later_values_leave_features_unchanged(data, tables):
    base = hand_tables()
    ents = entities(("a", T), ("b", T))
    expected = _hand_features_at_t()
    changed = dict(base)
    for table in tables:
        times = data.draw(st.lists(_future, min_size=1, max_size=4), label=table)
        account = data.draw(st.sampled_from(["a", "b"]), label=f"{table} account")
        changed[table] = pd.concat([base[table], _future_rows(base, table, times, account)],
                                   ignore_index=True)
    for table, col in (("tickets", "resolved_at"), ("invoices", "paid_at")):
        frame = changed[table].copy()
        later = (frame[col] >= T).to_numpy()
        frame.loc[later, col] = data.draw(_future, label=col)
        changed[table] = frame
    got = build_features(warehouse(changed), ents, CFG)
    pd.testing.assert_frame_equal(got, expected)


def test_the_boundary_is_strict_for_every_dated_row():
    """Moving each hand-made row dated exactly at T one microsecond earlier changes features:
    so the rows at T in tests/feature_frames.py are excluded because of their date alone."""
    base = hand_tables()
    at_t = build_features(warehouse(base), entities(("a", T)), CFG)
    # Invoice i6 stays invisible a microsecond earlier too: it is not due yet, so neither
    # failed nor overdue (its boundary is tested in test_features with a due invoice).
    for table, col in TIME_COLUMN.items():
        frame = base[table]
        if table == "invoices" or not (frame[col] == T).any():
            continue
        moved = frame.copy()
        moved.loc[moved[col] == T, col] = T - US
        got = build_features(warehouse({**base, table: moved}), entities(("a", T)), CFG)
        numeric = [c for c in got.columns if got[c].dtype == "float64"]
        assert not got[numeric].equals(at_t[numeric]), table
        if table == "usage_events":  # the row at T is an `x` event: x's counts move too
            assert got["event_x_7d"].iloc[0] == at_t["event_x_7d"].iloc[0] + 100
