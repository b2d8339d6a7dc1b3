"""Hand-made contract tables for the feature tests, and a loader into a DuckDB warehouse.

`T` is the as-of date every expected value in tests/test_features.py is computed by hand for.
Account `a` has rows in every table, placed on both sides of each window edge; account `b` is
a customer with no activity at all; account `c` signs up after `T`. Tables are typed like the
ingested warehouse (TIMESTAMP, BOOLEAN, VARCHAR, DOUBLE, BIGINT), independent of ingest code.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pandas as pd

T = pd.Timestamp("2024-04-01")
US = pd.Timedelta(microseconds=1)


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)


def _frame(columns: Mapping[str, str], rows: list[tuple]) -> pd.DataFrame:
    """Rows to a frame with explicit dtypes (so empty and all-null columns keep their type)."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for name, dtype in columns.items():
        frame[name] = frame[name].astype(dtype)
    return frame


ACCOUNT_COLUMNS = {
    "account_id": "str", "name": "str", "segment": "str", "industry": "object",
    "region": "object", "plan": "object", "seats": "Int64", "arr": "Float64",
    "created_at": "datetime64[us]", "owner": "object",
    # custom attributes: a text, a number and a flag
    "csm_tier": "object", "health_index": "Float64", "is_partner": "boolean",
}
USAGE_COLUMNS = {"account_id": "str", "user_id": "str", "ts": "datetime64[us]",
                 "event": "str", "quantity": "Float64"}
TICKET_COLUMNS = {
    "account_id": "str", "ticket_id": "str", "created_at": "datetime64[us]",
    "resolved_at": "datetime64[us]", "priority": "str", "escalated": "boolean",
    "reopened": "boolean", "csat": "Float64", "sentiment": "Float64",
}
SURVEY_COLUMNS = {"account_id": "str", "ts": "datetime64[us]", "kind": "str", "score": "float64"}
TOUCH_COLUMNS = {"account_id": "str", "ts": "datetime64[us]", "kind": "str", "direction": "str",
                 "executive": "boolean", "responded": "boolean"}
SUB_COLUMNS = {
    "account_id": "str", "subscription_id": "str", "start_date": "datetime64[us]",
    "end_date": "datetime64[us]", "arr": "float64", "seats": "Int64", "status": "str",
    "auto_renew": "boolean",
}
INVOICE_COLUMNS = {
    "account_id": "str", "invoice_id": "str", "issued_at": "datetime64[us]",
    "due_at": "datetime64[us]", "paid_at": "datetime64[us]", "amount": "float64", "status": "str",
}
CHURN_COLUMNS = {"account_id": "str", "churned_at": "datetime64[us]", "reason": "object"}
EXPANSION_COLUMNS = {"account_id": "str", "ts": "datetime64[us]", "arr_delta": "float64"}

COLUMNS = {
    "accounts": ACCOUNT_COLUMNS, "usage_events": USAGE_COLUMNS, "tickets": TICKET_COLUMNS,
    "surveys": SURVEY_COLUMNS, "touchpoints": TOUCH_COLUMNS, "subscriptions": SUB_COLUMNS,
    "invoices": INVOICE_COLUMNS, "churn_events": CHURN_COLUMNS,
    "expansion_events": EXPANSION_COLUMNS,
}
N = None


def hand_tables() -> dict[str, pd.DataFrame]:
    """Every contract table, small enough to compute each feature of account `a` by hand."""
    acc = [
        ("a", "Acme", "smb", "tech", "eu", "pro", 10, 1000.0, ts("2023-01-01"), "o1",
         "gold", 3.5, True),
        ("b", "Beta", "enterprise", N, "us", "ent", N, N, ts("2024-03-02"), N, N, N, N),
        ("c", "Cobalt", "mid-market", "retail", "apac", "pro", 5, N, ts("2024-06-01"), N,
         "silver", 1.0, False),
    ]
    usage = [
        ("a", "u1", T - US, "x", 2.0),                       # the last instant before T
        ("a", "u1", T, "x", 100.0),                          # at T: the future
        ("a", "u2", ts("2024-03-20 10:00"), "y", 1.0),
        ("a", "u2", ts("2024-03-20 11:00"), "x", N),         # quantity unknown: 1
        ("a", "u1", ts("2024-02-15 10:00"), "z", 5.0),       # the 30 days before
        ("a", "u3", ts("2023-06-01 10:00"), "z", 5.0),       # long ago
        ("a", "u4", ts("2024-01-02 00:00"), "w", 1.0),       # first instant of the 90 days
        ("a", "u5", ts("2024-01-01 23:59:59"), "w", 1.0),    # just before the 90 days
    ]
    tickets = [
        ("a", "t1", ts("2024-03-25"), ts("2024-03-26"), "high", True, False, 4.0, 0.5),
        ("a", "t2", ts("2024-03-10"), T, "normal", False, False, 1.0, -0.5),  # resolved at T
        ("a", "t3", ts("2024-02-10"), ts("2024-02-12"), "urgent", False, True, 2.0, 0.0),
        ("a", "t4", ts("2023-12-01"), N, "low", False, False, N, N),          # still open
        ("a", "t5", T, N, "urgent", True, True, 1.0, -1.0),                   # opened at T
        ("a", "t6", ts("2024-03-30"), ts("2024-03-31 12:00"), "low", False, False, N, N),
    ]
    surveys = [
        ("a", ts("2023-03-01"), "nps", 10.0),                # before the 365 days
        ("a", ts("2023-10-01"), "nps", 6.0),
        ("a", ts("2024-03-15 12:00"), "nps", 8.0),           # two answers at the same instant
        ("a", ts("2024-03-15 12:00"), "nps", 10.0),
        ("a", T, "nps", 0.0),                                # at T
        ("a", ts("2024-03-20"), "csat", 4.0),
        ("a", ts("2024-01-01"), "csat", 2.0),                # just before the 90 days
    ]
    touch = [
        ("a", ts("2024-03-28"), "meeting", "outbound", True, True),
        ("a", ts("2024-03-01"), "email", "outbound", False, False),
        ("a", ts("2024-02-20"), "call", "outbound", False, N),     # response unknown
        ("a", ts("2024-01-15"), "qbr", "inbound", True, N),
        ("a", ts("2023-11-01"), "meeting", "outbound", True, True),
        ("a", T, "meeting", "outbound", True, True),
    ]
    subs = [
        ("a", "s1", ts("2023-01-01"), ts("2023-12-31"), 1000.0, 10, "expired", False),
        ("a", "s2", ts("2024-01-01"), ts("2024-12-31"), 1200.0, 15, "active", True),
        ("a", "s3", ts("2024-03-01"), N, 300.0, 5, "active", N),           # open-ended
        ("a", "s4", T, ts("2025-04-01"), 9000.0, 90, "active", True),      # starts at T
        ("a", "s5", ts("2023-06-01"), ts("2024-02-01"), 500.0, N, "cancelled", False),
    ]
    invoices = [
        ("a", "i1", ts("2024-03-01"), ts("2024-03-15"), N, 100.0, "failed"),
        ("a", "i2", ts("2024-03-20"), ts("2024-04-19"), N, 100.0, "failed"),  # not due at T
        ("a", "i3", ts("2024-02-01"), ts("2024-02-15"), T, 100.0, "paid"),    # paid at T
        ("a", "i4", ts("2024-01-01"), ts("2024-01-15"), ts("2024-01-20"), 100.0, "paid"),
        ("a", "i5", ts("2023-06-01"), ts("2023-06-15"), N, 100.0, "open"),
        ("a", "i6", T, ts("2024-04-15"), N, 100.0, "failed"),
    ]
    rows = {
        "accounts": acc, "usage_events": usage, "tickets": tickets, "surveys": surveys,
        "touchpoints": touch, "subscriptions": subs, "invoices": invoices,
        "churn_events": [], "expansion_events": [],
    }
    return {name: _frame(COLUMNS[name], r) for name, r in rows.items()}


def load(con: duckdb.DuckDBPyConnection, tables: Mapping[str, pd.DataFrame]) -> None:
    """Create one warehouse table per frame (replacing it), typed from the frame's dtypes."""
    for name, frame in tables.items():
        con.register("_frame", frame)
        con.execute(f'create or replace table "{name}" as select * from _frame')
        con.unregister("_frame")


def warehouse(tables: Mapping[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    load(con, tables)
    return con


def entities(*pairs: tuple[str, object]) -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": [p[0] for p in pairs],
         "as_of": pd.to_datetime([p[1] for p in pairs]).astype("datetime64[us]")}
    )
