"""Features of the customer's own event types and date attributes, on the hand-made tables
(tests/support/feature_frames.py): values worked out by hand, the choice of types, and the same
values on the batch (DuckDB) and online (SQLite) paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.event_types import event_types
from features.settings import FeatureConfig
from tests.support.feature_frames import T, entities, hand_tables, warehouse

ONLINE, BATCH = FeatureConfig(), FeatureConfig(online_max_entities=0)

# Account `a` as of T. Its usage rows: x 2 (the last instant before T), x at T (the future, not
# counted), y 1 and x 1 (unknown quantity) on Mar 20, z 5 on Feb 15 (the 30 days before), z 5 in
# 2023 (long ago), w 1 at the first instant of the 90 days, w 1 just before them. 30 days: 4
# events on 2 active days.
EXPECTED_A = {
    "event_x_7d": 2, "event_x_30d": 3, "event_x_90d": 3,
    "event_x_per_active_day_30d": 1.5, "event_x_share_30d": 0.75, "event_x_change_30d": 3,
    "event_y_7d": 0, "event_y_30d": 1, "event_y_90d": 1,
    "event_y_per_active_day_30d": 0.5, "event_y_share_30d": 0.25, "event_y_change_30d": 1,
    "event_z_30d": 0, "event_z_90d": 5, "event_z_share_30d": 0.0, "event_z_change_30d": -5,
    "event_w_30d": 0, "event_w_90d": 1, "event_w_change_30d": 0,
}


@pytest.mark.parametrize("cfg", [ONLINE, BATCH], ids=["online", "batch"])
def test_each_event_type_has_counts_rate_share_and_change_worked_out_by_hand(cfg):
    got = build_features(warehouse(hand_tables()), entities(("a", T), ("b", T)), cfg)
    a, b = got.iloc[0], got.iloc[1]
    for name, value in EXPECTED_A.items():
        assert a[name] == pytest.approx(value), name
    # b has no usage at all: no events of any type; no activity to divide by
    assert b["event_x_30d"] == 0 and b["event_x_change_30d"] == 0
    assert np.isnan(b["event_x_per_active_day_30d"]) and np.isnan(b["event_x_share_30d"])


def test_the_most_frequent_types_are_chosen_ties_by_name():
    con = warehouse(hand_tables())
    # events (quantities, 1 where unknown): x 103 (100 of them at T), z 10, w 2, y 1
    assert [t.slug for t in event_types(con, FeatureConfig(top_event_types=3))] == [
        "x", "z", "w"]
    usage = hand_tables()["usage_events"]
    usage.loc[usage["event"] == "w", "quantity"] = 5.0  # w 10, as many as z: by name
    con = warehouse({**hand_tables(), "usage_events": usage})
    assert [t.slug for t in event_types(con, FeatureConfig(top_event_types=2))] == ["x", "w"]
    got = build_features(con, entities(("a", T)), FeatureConfig(top_event_types=2))
    assert [c for c in got.columns if c.endswith("_90d") and c.startswith("event_")] == [
        "event_x_90d", "event_w_90d"]
    con.execute("alter table usage_events drop column quantity")  # optional: rows count
    assert [t.slug for t in event_types(con, FeatureConfig(top_event_types=2))] == ["x", "w"]
    none = build_features(con, entities(("a", T)), FeatureConfig(top_event_types=0))
    assert not [c for c in none.columns if c.startswith("event_")]


def test_names_that_slug_alike_are_one_type_named_from_its_slug():
    tables = hand_tables()
    usage = tables["usage_events"].copy()
    usage["event"] = usage["event"].map({"x": "Report.Export", "y": "report-export"}).fillna(
        usage["event"])
    got = build_features(warehouse({**tables, "usage_events": usage}), entities(("a", T)),
                         ONLINE)
    assert got["event_report_export_30d"].iloc[0] == 4  # x's 3 and y's 1
    assert got["event_report_export_share_30d"].iloc[0] == 1.0


@pytest.mark.parametrize("cfg", [ONLINE, BATCH], ids=["online", "batch"])
def test_named_event_types_are_built_exactly_even_when_the_data_lacks_one(cfg):
    """A model's types: built as named, in order; a type without rows has no events."""
    pinned = cfg.model_copy(update={"event_types": ("y", "billing_downgrade_viewed")})
    got = build_features(warehouse(hand_tables()), entities(("a", T)), pinned)
    events = [c for c in got.columns if c.startswith("event_")]
    assert events[0] == "event_y_7d" and len(events) == 12
    assert got["event_y_30d"].iloc[0] == 1
    row = got.iloc[0]
    assert row["event_billing_downgrade_viewed_90d"] == 0
    assert row["event_billing_downgrade_viewed_share_30d"] == 0.0


def test_event_type_features_are_missing_when_usage_is_not_connected():
    tables = {k: v for k, v in hand_tables().items() if k != "usage_events"}
    pinned = FeatureConfig(event_types=("x",))
    got = build_features(warehouse(tables), entities(("a", T)), pinned)
    assert got.filter(like="event_x_").isna().all(axis=None)


def test_online_and_batch_paths_agree_on_event_types_over_many_as_of_dates():
    con = warehouse(hand_tables())
    ents = entities(("a", T), ("b", T), ("a", "2024-03-01"), ("a", "2024-02-16"),
                    ("c", "2024-07-01"))
    pd.testing.assert_frame_equal(build_features(con, ents, ONLINE),
                                  build_features(con, ents, BATCH))


@pytest.mark.parametrize("cfg", [ONLINE, BATCH], ids=["online", "batch"])
def test_a_date_attribute_is_its_age_in_days_and_missing_before_the_date(cfg):
    con = warehouse(hand_tables())
    con.execute("alter table accounts add column birth_date date")
    con.execute("update accounts set birth_date = case account_id when 'a' then "
                "date '2024-03-02' when 'b' then date '2024-04-01' else date '2030-01-01' end")
    got = build_features(con, entities(("a", T), ("b", T), ("c", T)), cfg)
    assert "attr_birth_date" not in got.columns
    ages = got["attr_days_since_birth_date"]
    assert ages.dtype == "float64"
    # a: 30 days from Mar 2 to Apr 1; b: the date is the as-of day itself, c: in the future
    assert ages.iloc[0] == 30 and np.isnan(ages.iloc[1]) and np.isnan(ages.iloc[2])
