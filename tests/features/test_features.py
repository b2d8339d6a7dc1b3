"""Feature correctness on tiny hand-made tables: every kind of feature against values computed
by hand (see tests/feature_frames.py for the rows and why each sits where it does), the missing
semantics, custom attributes, entity frames and the `features` command."""

from __future__ import annotations

import math

import ibis
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import definitions as d
from features.build import EntityError, build_features
from features.entities import build_entities
from features.registry import FEATURE_NAMES, FEATURES
from features.settings import FeatureConfig
from tests.support.feature_frames import US, T, entities, hand_tables, load, warehouse

CFG = FeatureConfig()

# Account `a` as of T, each value worked out by hand from tests/feature_frames.py.
EXPECTED_A = {
    # distinct users: 7d {u1}; 30d {u1, u2}; 90d adds u4 (at the window's first instant), not u5
    "active_users_7d": 1, "active_users_30d": 2, "active_users_90d": 3,
    # 2 users / 20 seats of the active subscriptions (s2 15 + s3 5)
    "active_user_ratio_30d": 0.1,
    # user-days: (u1, Mar 31), (u2, Mar 20); the 30 days before: (u1, Feb 15)
    "logins_30d": 2, "logins_pct_change_30d": 100.0,
    "active_days_30d": 2, "days_since_last_activity": 1,
    # quantities 2 (7d); 2 + 1 + 1 (unknown quantity counts 1) (30d); + 5 + 1 (90d); before: 5
    "events_7d": 2, "events_30d": 4, "events_90d": 10, "events_per_seat_30d": 0.2,
    "events_pct_change_30d": -20.0,
    # features {x, y} (30d), {x, y, z, w} (90d), {z} the 30 days before
    "features_used_30d": 2, "features_used_90d": 4, "features_used_change_30d": 1,
    # tickets t1, t2, t6 (30d); t3 before; t5 opened at T is not seen
    "tickets_30d": 3, "tickets_90d": 4, "tickets_pct_change_30d": 200.0,
    "urgent_tickets_90d": 2, "escalations_90d": 1, "reopened_tickets_90d": 1,
    # t2 is resolved at T, so open at T; t4 was never resolved
    "open_tickets": 2,
    # resolved before T: t1 24 h, t3 48 h, t6 36 h; t2's CSAT is not known yet at T
    "median_resolution_hours_90d": 36.0, "ticket_csat_90d": 3.0, "ticket_sentiment_90d": 0.0,
    "days_since_last_ticket": 2,
    # two NPS answers at the same latest instant (8 and 10) average to 9
    "nps_last": 9.0, "nps_avg_365d": 8.0, "csat_avg_90d": 4.0, "survey_responses_90d": 3,
    "days_since_last_survey": 12,
    # active at T: s2 1200 + s3 300; 90 days earlier: s2 1200 + s5 500
    "arr": 1500.0, "arr_pct_change_90d": 100 * (1500 - 1700) / 1700,
    "subscription_seats": 20, "days_to_renewal": 274, "auto_renew": 1.0,
    # s2 ends first (s3 is open-ended, s4 starts at T): 2024-01-01 .. 2024-12-31
    "contract_term_days": 365,
    # i1 failed and due; i2 failed but not due yet. Overdue: i1, i3 (paid at T), i5
    "failed_payments_90d": 1, "overdue_invoices": 3,
    "touchpoints_30d": 1, "touchpoints_90d": 4, "exec_touches_90d": 2,
    "days_since_last_exec_touch": 4, "days_since_last_touch": 4,
    # outbound with a known response in 90 days: answered 1 of 2
    "response_rate_90d": 0.5,
    "tenure_days": 456, "seats": 10,
}


@pytest.fixture(scope="module")
def con():
    return warehouse(hand_tables())


@pytest.fixture(scope="module")
def frame(con):
    return build_features(con, entities(("a", T), ("b", T), ("c", T)), CFG)


def row(frame: pd.DataFrame, account: str) -> pd.Series:
    return frame.set_index("account_id").loc[account]


@pytest.mark.parametrize("name", sorted(EXPECTED_A))
def test_each_feature_of_the_active_account_matches_the_hand_computed_value(frame, name):
    assert row(frame, "a")[name] == pytest.approx(EXPECTED_A[name], abs=1e-9)


def test_hand_expectations_cover_every_numeric_feature():
    numeric = {f.name for f in FEATURES if f.dtype == "float"}
    assert set(EXPECTED_A) == numeric


def test_profile_categories_and_custom_attributes(frame):
    a = row(frame, "a")
    assert (a["segment"], a["industry"], a["region"], a["plan"]) == ("smb", "tech", "eu", "pro")
    assert a["attr_csm_tier"] == "gold"
    assert a["attr_health_index"] == 3.5
    assert a["attr_is_partner"] == 1.0
    assert isinstance(frame["attr_csm_tier"].dtype, pd.CategoricalDtype)
    assert frame["attr_health_index"].dtype == "float64"
    assert frame["attr_is_partner"].dtype == "float64"
    b = row(frame, "b")
    assert pd.isna(b["industry"]) and pd.isna(b["attr_csm_tier"]) and pd.isna(b["seats"])


def test_an_account_with_no_activity_has_zero_counts_and_missing_everything_else(frame):
    b = row(frame, "b")
    for name in ("active_users_30d", "logins_30d", "events_30d", "features_used_90d",
                 "tickets_90d", "open_tickets", "survey_responses_90d", "touchpoints_90d",
                 "exec_touches_90d", "failed_payments_90d", "overdue_invoices", "arr",
                 "subscription_seats", "features_used_change_30d"):
        assert b[name] == 0, name
    for name in ("days_since_last_activity", "logins_pct_change_30d", "events_pct_change_30d",
                 "tickets_pct_change_30d", "arr_pct_change_90d", "median_resolution_hours_90d",
                 "ticket_csat_90d", "nps_last", "nps_avg_365d", "csat_avg_90d",
                 "days_since_last_ticket", "days_since_last_survey", "days_to_renewal",
                 "contract_term_days", "auto_renew", "response_rate_90d", "days_since_last_touch",
                 # no seats anywhere: a ratio per seat is unknown, not 0
                 "active_user_ratio_30d", "events_per_seat_30d"):
        assert math.isnan(b[name]), name
    assert b["tenure_days"] == 30


def test_an_account_created_after_as_of_has_no_tenure(frame):
    assert math.isnan(row(frame, "c")["tenure_days"])


def test_an_account_created_on_the_as_of_day_has_a_tenure_of_zero(con):
    out = build_features(con, entities(("c", "2024-06-01"), ("c", "2024-06-02")), CFG)
    assert out["tenure_days"].tolist() == [0, 1]


def test_a_table_that_is_not_connected_gives_missing_features_not_zeros():
    tables = {k: v for k, v in hand_tables().items() if k in ("accounts", "usage_events")}
    out = build_features(warehouse(tables), entities(("a", T)), CFG)
    for spec in FEATURES:
        if spec.source in ("tickets", "surveys", "touchpoints", "subscriptions", "invoices"):
            assert out[spec.name].isna().all(), spec.name
    # usage is connected: its counts are there; seats fall back to accounts.seats (10)
    assert out.loc[0, "events_30d"] == 4
    assert out.loc[0, "active_user_ratio_30d"] == pytest.approx(0.2)


def test_a_connected_but_empty_table_gives_zero_counts_and_missing_means():
    tables = hand_tables()
    tables["tickets"] = tables["tickets"].iloc[0:0]
    out = build_features(warehouse(tables), entities(("a", T)), CFG)
    assert out.loc[0, "tickets_90d"] == 0 and out.loc[0, "open_tickets"] == 0
    assert math.isnan(out.loc[0, "ticket_csat_90d"])
    assert math.isnan(out.loc[0, "tickets_pct_change_30d"])


def test_optional_columns_absent_from_a_table_read_as_their_defaults():
    tables = hand_tables()
    tables["usage_events"] = tables["usage_events"].drop(columns="quantity")
    tables["tickets"] = tables["tickets"].drop(columns=["escalated", "csat"])
    tables["subscriptions"] = tables["subscriptions"].drop(columns="auto_renew")
    out = build_features(warehouse(tables), entities(("a", T)), CFG).iloc[0]
    assert out["events_30d"] == 3  # three events in 30 days, each counted once
    assert out["escalations_90d"] == 0
    assert math.isnan(out["ticket_csat_90d"]) and math.isnan(out["auto_renew"])


USER_FEATURES = ("active_users_7d", "active_users_30d", "active_users_90d",
                 "active_user_ratio_30d", "logins_30d", "logins_pct_change_30d")


@pytest.mark.parametrize("how", ["absent", "all empty"])
@pytest.mark.parametrize("cfg", [CFG, FeatureConfig(online_max_entities=0)],
                         ids=["online", "batch"])
def test_usage_without_user_ids_has_missing_user_features_and_the_other_usage_features(
        how, cfg):
    tables = hand_tables()
    usage = tables["usage_events"]
    tables["usage_events"] = usage.drop(columns="user_id") if how == "absent" else \
        usage.assign(user_id=pd.Series([None] * len(usage), dtype="str"))
    out = build_features(warehouse(tables), entities(("a", T), ("b", T)), cfg)
    for name in USER_FEATURES:
        assert out[name].isna().all(), name
    a = out.iloc[0]
    for name in ("events_7d", "events_30d", "events_90d", "events_per_seat_30d",
                 "events_pct_change_30d", "active_days_30d", "days_since_last_activity",
                 "features_used_30d", "features_used_90d", "features_used_change_30d"):
        assert a[name] == pytest.approx(EXPECTED_A[name]), name
    assert out.iloc[1]["events_30d"] == 0


def test_a_usage_row_without_a_user_counts_as_usage_but_not_as_a_user():
    tables = hand_tables()
    usage = tables["usage_events"].copy()
    usage.loc[usage["user_id"] == "u2", "user_id"] = None
    tables["usage_events"] = usage
    a = build_features(warehouse(tables), entities(("a", T)), CFG).iloc[0]
    assert a["active_users_30d"] == 1 and a["logins_30d"] == 1
    assert a["events_30d"] == EXPECTED_A["events_30d"]


def test_features_never_read_the_subscription_status():
    tables = hand_tables()
    tables["subscriptions"] = tables["subscriptions"].drop(columns="status")
    ents = entities(("a", T), ("b", T))
    pd.testing.assert_frame_equal(build_features(warehouse(tables), ents, CFG),
                                  build_features(warehouse(hand_tables()), ents, CFG))


def test_days_since_reaches_back_beyond_the_longest_window(con):
    # Before any 2024 row: the last activity is u3 on 2023-06-01, 183 days before 2023-12-01.
    out = build_features(con, entities(("a", "2023-12-01")), CFG).iloc[0]
    assert out["days_since_last_activity"] == 183
    assert out["events_90d"] == 0
    # t4 was opened at 2023-12-01 00:00, the as-of instant itself: no ticket before it
    assert math.isnan(out["days_since_last_ticket"])


def test_pct_change_is_missing_when_the_previous_window_is_empty():
    tables = hand_tables()
    usage = tables["usage_events"]
    # remove the only row of the 30 days before (u1 on Feb 15)
    tables["usage_events"] = usage[usage["ts"] != pd.Timestamp("2024-02-15 10:00")]
    out = build_features(warehouse(tables), entities(("a", T)), CFG).iloc[0]
    assert math.isnan(out["logins_pct_change_30d"]) and math.isnan(out["events_pct_change_30d"])
    assert out["features_used_change_30d"] == 2  # change is a difference: 2 - 0


@pytest.mark.parametrize(
    ("table", "column", "feature"),
    [
        ("usage_events", "ts", "events_7d"),
        ("tickets", "created_at", "tickets_30d"),
        ("surveys", "ts", "survey_responses_90d"),
        ("touchpoints", "ts", "touchpoints_30d"),
        ("subscriptions", "start_date", "subscription_seats"),
        ("invoices", "issued_at", "overdue_invoices"),
    ],
)
def test_a_row_exactly_at_as_of_is_excluded_and_one_a_microsecond_before_is_included(
    table, column, feature
):
    base = hand_tables()
    one = base[table].iloc[[0]].copy()
    one["account_id"] = "b"
    if table == "invoices":
        one["due_at"] = T - pd.Timedelta(days=30)  # due long before: overdue when issued
    if table == "subscriptions":
        one["end_date"] = pd.NaT
    values = []
    for when in (T, T - US):
        one[column] = when
        if table == "invoices":
            one["issued_at"] = when
        tables = {**base, table: pd.concat([base[table], one], ignore_index=True)}
        out = build_features(warehouse(tables), entities(("b", T)), CFG)
        values.append(out.loc[0, feature])
    assert values[0] == 0
    assert values[1] > 0


def test_entity_rows_keep_their_order_and_duplicates(con):
    ents = entities(("b", T), ("a", T), ("a", "2024-03-01"), ("b", T), ("a", T))
    out = build_features(con, ents, CFG)
    assert list(out["account_id"]) == ["b", "a", "a", "b", "a"]
    assert list(out["as_of"]) == list(ents["as_of"])
    single = build_features(con, entities(("a", "2024-03-01")), CFG)
    pd.testing.assert_frame_equal(out.iloc[[2]].reset_index(drop=True), single,
                                  check_categorical=False)
    pd.testing.assert_frame_equal(out.iloc[[1]].reset_index(drop=True),
                                  out.iloc[[4]].reset_index(drop=True))


def test_one_account_alone_gets_the_same_values_as_in_a_batch(con, frame):
    alone = build_features(con, entities(("a", T)), CFG)
    batch = frame[frame["account_id"] == "a"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, batch, check_categorical=False)


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(online_max_entities=0),  # batch: the profile read by a literal list
        FeatureConfig(online_max_entities=0, literal_account_filter_max=0),  # semi join
    ],
    ids=["batch-literal", "batch-semi-join"],
)
def test_every_execution_path_gives_the_same_values(con, frame, cfg):
    """The default for a few entities runs on SQLite; larger frames in DuckDB: both reuse
    SQL compiled once per warehouse schema."""
    ents = entities(("a", T), ("b", T), ("c", T), ("a", "2023-12-01"))
    expected = build_features(con, ents, CFG)
    pd.testing.assert_frame_equal(build_features(con, ents, cfg), expected)
    pd.testing.assert_frame_equal(expected.iloc[:3], frame)


def test_batch_statements_compiled_once_read_each_call_s_own_time_range(con):
    """The batch path's statements are compiled once per schema, the as-of range bound per
    call: builds of other ranges on the same connection equal builds of each alone."""
    from features.build import _batch_sql

    first = entities(("a", T), ("b", T))
    later = entities(("a", "2024-02-15"), ("a", "2023-11-01"))
    cfg = FeatureConfig(online_max_entities=0)
    build_features(con, first, cfg)
    hits = _batch_sql.cache_info().hits
    got = build_features(con, later, cfg)
    assert _batch_sql.cache_info().hits > hits
    each = pd.concat([build_features(con, later.iloc[[i]], CFG) for i in range(len(later))],
                     ignore_index=True)
    pd.testing.assert_frame_equal(got, each, check_categorical=False)


def test_the_online_path_and_the_batch_path_agree_on_a_generated_world():
    """A few entities run on SQLite, many in DuckDB: same values either way."""
    from datetime import date

    from features.synth.generate import generate_world

    con = warehouse(generate_world(60, date(2024, 1, 1), 300, seed=5).tables)
    ents = build_entities(con, ["2024-06-01", "2024-10-01"])
    batch = build_features(con, ents, FeatureConfig(online_max_entities=0))
    sample = ents.sample(12, random_state=1)
    online = build_features(con, sample, CFG)
    expected = batch.loc[sample.index].reset_index(drop=True)
    pd.testing.assert_frame_equal(online, expected, check_categorical=False)
    # every source is connected in the generated world: no feature is missing everywhere
    assert not batch[list(FEATURE_NAMES)].isna().all().any()


@pytest.fixture(scope="module")
def world_con():
    from datetime import date

    from features.synth.generate import generate_world

    return warehouse(generate_world(60, date(2024, 1, 1), 300, seed=5).tables)


def test_one_account_at_a_time_equals_the_batch_row_at_several_dates(world_con):
    """The service's call (one account, one date, on SQLite) gives exactly the row the batch
    path (DuckDB, compiled per call) gives, account after account."""
    ents = build_entities(world_con, ["2024-03-01", "2024-06-01", "2024-10-27"])
    batch = build_features(world_con, ents, FeatureConfig(online_max_entities=0))
    for i in ents.sample(15, random_state=3).index:
        alone = build_features(world_con, ents.loc[[i]], CFG)
        pd.testing.assert_frame_equal(alone, batch.loc[[i]].reset_index(drop=True),
                                      check_categorical=False)


def test_the_online_days_since_fallback_runs_for_the_entities_that_need_it(world_con):
    """Entities without usage inside the lookback get days_since from their older rows, by a
    second fetch and statement, next to entities that need none: the values the batch path
    gives."""
    ids = world_con.execute("select account_id from accounts order by 1").fetchdf()
    # Every account, churned ones too: those have no usage in the last 90 days.
    ents = pd.DataFrame({"account_id": ids["account_id"], "as_of": pd.Timestamp("2024-10-27")})
    batch = build_features(world_con, ents, FeatureConfig(online_max_entities=0))
    old = batch.index[batch["days_since_last_activity"] > d.USAGE_LOOKBACK_DAYS]
    recent = batch.index[batch["days_since_last_activity"] <= 30]
    assert len(old) >= 3 and len(recent) >= 2
    for i in old[:3]:
        alone = build_features(world_con, ents.loc[[i]], CFG)
        pd.testing.assert_frame_equal(alone, batch.loc[[i]].reset_index(drop=True),
                                      check_categorical=False)
    mixed = [old[0], recent[0], old[1], recent[1]]
    pd.testing.assert_frame_equal(build_features(world_con, ents.loc[mixed], CFG),
                                  batch.loc[mixed].reset_index(drop=True),
                                  check_categorical=False)


def test_the_online_path_sees_a_replaced_or_dropped_table():
    """Compiled SQL is reused across calls, never stale: a table replaced with the same columns
    gives the new rows; a dropped one gives missing features."""
    con = warehouse(hand_tables())
    one = entities(("a", T))
    for _ in range(3):  # the compiled SQL and the thread's scratch database are reused
        assert build_features(con, one, CFG)["tickets_90d"].iloc[0] == EXPECTED_A["tickets_90d"]
    tickets = hand_tables()["tickets"]
    load(con, {"tickets": tickets[tickets["account_id"] != "a"]})
    assert build_features(con, one, CFG)["tickets_90d"].iloc[0] == 0
    con.execute("drop table tickets")
    assert np.isnan(build_features(con, one, CFG)["tickets_90d"].iloc[0])
    usage = build_features(con, one, CFG)["events_30d"].iloc[0]
    assert usage == EXPECTED_A["events_30d"]


def test_the_online_path_sees_a_column_added_to_accounts():
    """A new custom attribute is a new warehouse schema: the online path compiles for it."""
    con = warehouse(hand_tables())
    one = entities(("a", T))
    assert "attr_tier" not in build_features(con, one, CFG).columns
    con.execute("alter table accounts add column tier varchar default 'gold'")
    assert build_features(con, one, CFG)["attr_tier"].astype(str).tolist() == ["gold"]


def test_the_online_path_takes_decimals_dates_and_views_as_the_batch_path_does():
    """Warehouses hold types the contract does not name (a DECIMAL or DATE custom attribute, a
    view for a table): SQLite gets them in a form that computes the same."""
    con = warehouse(hand_tables())
    con.execute("alter table accounts add column budget decimal(12, 2) default 1234.5")
    con.execute("alter table accounts add column renewed date default date '2024-02-01'")
    con.execute("alter table tickets rename to tickets_raw")
    con.execute("create view tickets as select * from tickets_raw")
    ents = entities(("a", T), ("b", T), ("a", "2024-03-01"), ("c", "2024-02-15"))
    online = build_features(con, ents, CFG)
    batch = build_features(con, ents, FeatureConfig(online_max_entities=0))
    pd.testing.assert_frame_equal(online, batch)
    assert online["attr_budget"].tolist() == [1234.5] * 4
    assert online["tickets_90d"].notna().all()


def test_a_read_only_warehouse_has_its_catalog_read_once_and_gives_the_same_values(tmp_path):
    """The service's snapshots are read-only: their schema cannot change, so the online path
    reads it once per connection; the values are those of a writable warehouse."""
    import duckdb

    from features.build import held_rows, warm_online
    from features.contract import warehouse as wh

    path = tmp_path / "w.duckdb"
    writable = duckdb.connect(str(path))
    load(writable, hand_tables())
    ents = entities(("a", T), ("b", T))
    expected = build_features(writable, ents, CFG)
    assert wh.remembered(writable, "shape") is None  # a writable warehouse may change
    writable.close()
    con = duckdb.connect(str(path), read_only=True)
    pd.testing.assert_frame_equal(build_features(con, ents, CFG), expected)
    assert wh.remembered(con, "shape") is not None  # a read-only one is read once
    assert wh.remembered(con, "account_rows") is None  # rows are held only when warmed
    assert warm_online(con, CFG) is not None and held_rows(con) is not None
    for cfg in (CFG, FeatureConfig(online_row_index_max_rows=0)):
        pd.testing.assert_frame_equal(build_features(con, ents, cfg), expected)
    assert wh.remembered(con, "account_rows") is not None
    assert wh.connected_tables(con) == frozenset(hand_tables())


def test_the_rows_held_in_memory_are_the_rows_duckdb_fetches(world_con, tmp_path):
    """features/account_rows.py slices what sqlite_engine.fetch reads with one statement per
    table: the same rows for one account, several, several dates, and the usage fallback."""
    import duckdb

    from features import sqlite_engine as se
    from features.account_rows import AccountRows
    from features.build import READ_TABLES, shape_of

    path = tmp_path / "w.duckdb"
    world_con.execute(f"attach '{path}' as copy")
    world_con.execute("copy from database memory to copy")
    world_con.execute("detach copy")
    con = duckdb.connect(str(path), read_only=True)
    shape = shape_of(con)
    tables = se.tables_read(shape, READ_TABLES)
    assert AccountRows.load(con.cursor(), shape, tables, max_rows=100) is None  # too many
    rows = AccountRows.load(con.cursor(), shape, tables)
    assert rows is not None
    ids = [r[0] for r in con.execute("select account_id from accounts order by 1").fetchall()]
    cases = [[(ids[0], "2024-06-01")], [(ids[5], "2024-10-27")], [(ids[9], "2024-01-15")],
             [(ids[1], "2024-03-01"), (ids[2], "2024-08-01"), (ids[1], "2024-09-01")],
             [("no-such-account", "2024-06-01")]]
    for pairs in cases:
        keys = entities(*pairs)
        for older in (False, True):
            expected = se.fetch(con.cursor(), shape, tables, keys, older=older)
            got = rows.fetch(tables, keys, older=older)
            for table in tables:
                assert sorted(got[table], key=repr) == sorted(expected[table], key=repr), \
                    (pairs, older, table)
    assert sum(len(v) for v in rows.fetch(tables, entities((ids[0], "2024-06-01"))).values())
    # and through build_features: each account alone, from memory, equals its batch row
    from features.build import held_rows, warm_online

    assert warm_online(con, CFG) is not None and held_rows(con) is not None
    ents = build_entities(con, ["2024-03-01", "2024-10-27"]).sample(8, random_state=2)
    batch = build_features(con, ents, FeatureConfig(online_max_entities=0))
    for i, label in enumerate(ents.index):
        alone = build_features(con, ents.loc[[label]], CFG)
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True),
                                      check_categorical=False)


def test_concurrent_online_calls_on_one_connection_each_get_their_own_rows(world_con):
    from concurrent.futures import ThreadPoolExecutor

    ents = build_entities(world_con, "2024-06-01").head(8)
    batch = build_features(world_con, ents, FeatureConfig(online_max_entities=0))
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda i: build_features(world_con, ents.loc[[i]], CFG),
                             list(ents.index) * 3))
    for i, row in zip(list(ents.index) * 3, rows, strict=True):
        pd.testing.assert_frame_equal(row, batch.loc[[i]].reset_index(drop=True),
                                      check_categorical=False)


def test_ingest_stores_each_table_in_account_and_time_order(tmp_path):
    """So DuckDB's zone maps skip most of a table for one account (the online path)."""
    from datetime import date

    from features.contract.ingest import ingest_folder
    from features.contract.settings import IngestConfig
    from features.contract.warehouse import connect
    from features.synth.generate import generate_world, write_world

    write_world(generate_world(20, date(2024, 1, 1), 60, seed=2), tmp_path / "in", "parquet")
    ingest_folder(tmp_path / "in", tmp_path / "w.duckdb", IngestConfig(),
                  now=pd.Timestamp("2100-01-01").to_pydatetime())
    con = connect(tmp_path / "w.duckdb", read_only=True)
    for name, time_column in (("usage_events", "ts"), ("tickets", "created_at")):
        stored = con.execute(f"select account_id, {time_column} from {name}").df()
        ordered = stored.sort_values(["account_id", time_column], kind="stable")
        assert stored.index.equals(ordered.index), name
    con.close()


def test_no_entities_give_an_empty_frame_with_every_column(con, frame):
    out = build_features(con, entities(("a", T)).iloc[0:0], CFG)
    assert list(out.columns) == list(frame.columns) and out.empty


@pytest.mark.parametrize(
    ("ents", "message"),
    [
        (pd.DataFrame({"account_id": ["a"]}), "missing column"),
        (entities(("a", T)).assign(as_of=[T + pd.Timedelta(hours=5)]), "row 1, column as_of"),
        (pd.DataFrame({"account_id": ["a", None], "as_of": [T, T]}), "row 2, column account_id"),
        (entities(("a", T), ("zz", T)), "row 2, column account_id: 'zz'"),
    ],
)
def test_bad_entities_are_refused_with_the_row_and_column(con, ents, message):
    with pytest.raises(EntityError, match=message):
        build_features(con, ents, CFG)


def test_accounts_are_required():
    with pytest.raises(ValueError, match="no accounts table"):
        build_features(warehouse({"usage_events": hand_tables()["usage_events"]}),
                       entities(("a", T)), CFG)


# --- entities ---------------------------------------------------------------------------------
def test_an_account_is_active_from_its_signup_day_until_the_day_before_it_churns():
    from features.entities import ACTIVE, CHURNED, NOT_STARTED, status_at

    day = pd.Timestamp("2024-05-10").to_datetime64()
    created = pd.to_datetime(["2024-05-10 09:30", "2024-05-11 00:00", "2024-01-01 00:00",
                              "2024-01-01 00:00", "2024-01-01 00:00"]).to_numpy()
    churned = pd.to_datetime([None, None, "2024-05-10 00:00", "2024-05-10 23:00",
                              "2024-05-11 00:00"]).to_numpy()
    assert status_at(created, churned, day).tolist() == [
        ACTIVE,       # signed up on the as-of day
        NOT_STARTED,  # the day after
        CHURNED,      # churned on the as-of day, at any hour
        CHURNED,
        ACTIVE,       # churns the day after: still a customer
    ]


def test_entities_are_the_accounts_created_before_and_not_churned_before_each_date():
    tables = hand_tables()
    tables["churn_events"] = pd.DataFrame(
        {"account_id": ["b"], "churned_at": pd.to_datetime(["2024-05-10"]).astype("datetime64[us]"),
         "reason": [None]}
    )
    con = warehouse(tables)
    out = build_entities(con, ["2024-03-01", "2024-03-02", "2024-05-09", "2024-05-10",
                               "2024-06-01"])
    got = {(a, str(t.date())) for a, t in zip(out["account_id"], out["as_of"], strict=True)}
    assert got == {
        ("a", "2024-03-01"), ("a", "2024-03-02"), ("b", "2024-03-02"),   # b created Mar 2
        ("a", "2024-05-09"), ("b", "2024-05-09"),                        # b churns May 10:
        ("a", "2024-05-10"),                                             # not active that day
        ("a", "2024-06-01"), ("c", "2024-06-01"),                        # c created Jun 1
    }
    assert list(out.columns) == ["account_id", "as_of"]
    assert out["as_of"].is_monotonic_increasing


def test_entities_for_one_account_and_one_date(con):
    out = build_entities(con, T, account_ids=["a"])
    assert out.to_dict("list") == {"account_id": ["a"], "as_of": [T]}
    assert build_entities(con, T, account_ids=["c"]).empty  # not a customer yet
    assert build_entities(con, T, account_ids=["nope"]).empty


def test_entities_refuse_a_time_of_day(con):
    with pytest.raises(ValueError, match="not a date at midnight"):
        build_entities(con, ["2024-04-01 10:00"])


# --- portability ------------------------------------------------------------------------------
class _SparkOptions(ibis.config.Config):
    treat_nan_as_null: bool = False


def test_every_definition_compiles_for_pyspark(con, monkeypatch):
    """The same expressions must compile for the Spark backend (no DuckDB-only operations).

    pyspark itself is not in the lock, so this checks SQL generation for Spark's dialect; the
    Spark backend registers its options on import, which the compiler reads.
    """
    if ibis.options.pyspark is None:
        monkeypatch.setattr(ibis.options, "pyspark", _SparkOptions())
    backend = ibis.duckdb.from_connection(con)
    keys = entities(("a", T)).assign(**{d.ENTITY_KEY: [0]})
    ent = ibis.memtable(keys)
    table = backend.table
    exprs = [
        d.profile_features(ent, table("accounts"), "attr_"),
        d.usage_features(ent, table("usage_events"),
                         d.contracted_seats(ent, table("accounts"), table("subscriptions"))),
        d.usage_last_activity(ent, table("usage_events")),
        *(s.build(ent, table(s.table)) for s in d.SOURCES if s.table != "usage_events"),
    ]
    for expr in exprs:
        assert "SELECT" in ibis.to_sql(expr, dialect="pyspark")


def test_source_definitions_cover_the_registry_exactly():
    built = {name for s in d.SOURCES for name in s.features}
    profile = {f.name for f in FEATURES if f.source == "accounts"}
    assert built | profile == set(FEATURE_NAMES)
    assert not built & profile


def _flat(text: str) -> str:
    """Console output without rich's line wrapping."""
    return " ".join(text.split())


# --- the command ------------------------------------------------------------------------------
def test_features_command_writes_the_frame_and_a_summary(tmp_path):
    from healthscore.cli import app

    db = tmp_path / "w.duckdb"
    import duckdb

    with duckdb.connect(str(db)) as c:
        load(c, hand_tables())
    out = tmp_path / "f.parquet"
    result = CliRunner().invoke(
        app, ["features", "--as-of", "2024-04-01", "--warehouse", str(db), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "engagement" in result.output and "missing" in result.output
    # account_id, as_of, every registered feature, the three custom attributes and six for
    # each of the four event types (w, x, y, z)
    assert f"2 rows x {2 + len(FEATURES) + 3 + 6 * 4} columns" in _flat(result.output)
    written = pd.read_parquet(out)
    assert list(written["account_id"]) == ["a", "b"]  # c is not a customer yet
    assert written.loc[0, "events_30d"] == 4
    one = tmp_path / "one.csv"
    result = CliRunner().invoke(app, ["features", "--as-of", "2024-04-01", "--warehouse",
                                      str(db), "--account", "b", "--out", str(one)])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(one)["account_id"]) == ["b"]


def test_features_command_fails_clearly_for_an_inactive_account_or_a_bad_file(tmp_path):
    import duckdb

    from healthscore.cli import app

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as c:
        load(c, hand_tables())
    result = CliRunner().invoke(app, ["features", "--as-of", "2024-04-01", "--warehouse",
                                      str(db), "--account", "c"])
    assert result.exit_code == 1 and "c not active" in _flat(result.output)
    result = CliRunner().invoke(app, ["features", "--as-of", "2024-04-01", "--warehouse",
                                      str(tmp_path / "none.duckdb")])
    assert result.exit_code == 1 and "does not exist" in _flat(result.output)
    result = CliRunner().invoke(app, ["features", "--as-of", "2024-04-01", "--warehouse",
                                      str(db), "--out", str(tmp_path / "f.xlsx")])
    assert result.exit_code != 0


def test_frame_values_are_float64_or_category(frame):
    for spec in FEATURES:
        expected = "category" if spec.dtype == "category" else np.dtype("float64")
        assert frame[spec.name].dtype == expected, spec.name


def test_the_summary_reports_missing_share_and_unconnected_sources_per_dimension():
    from features.feature_summary import missing_by_dimension

    tables = {k: v for k, v in hand_tables().items() if k != "surveys"}
    con = warehouse(tables)
    out = build_features(con, entities(("a", T), ("b", T)), CFG)
    from features.contract.warehouse import connected_tables

    stats = missing_by_dimension(out, connected_tables(con)).set_index("dimension")
    assert stats.loc["satisfaction", "missing"] == 1.0
    assert stats.loc["satisfaction", "sources"] == "surveys (not connected)"
    assert stats.loc["profile", "features"] == 6 + 3  # six profile features, three attributes
    assert 0 < stats.loc["support", "missing"] < 1


def test_building_leaves_the_callers_connection_settings_alone():
    """Ibis changes session settings of the connection it wraps; labels and other callers on
    the same connection rely on DuckDB's defaults (Python replacement scans, local timezone)."""
    con = warehouse(hand_tables())

    def settings() -> tuple:
        return con.execute("select current_setting('python_enable_replacements'), "
                           "current_setting('TimeZone')").fetchone()

    before = settings()
    ents = build_entities(con, T)
    build_features(con, ents, CFG)
    build_features(con, ents, FeatureConfig(online_max_entities=0))
    assert settings() == before
