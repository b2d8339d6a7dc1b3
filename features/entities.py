"""Entity frames: which accounts are customers at which as-of dates.

This module owns `build_entities`, the one way to list (account_id, as_of) rows for features:
training passes many dates, the daily batch one date, the online path one date and one account.
An account is active at `as_of` when it was created before it (`created_at < as_of`) and has no
churn event dated before it (`churned_at < as_of`): a churned account stays churned. It reads
only `accounts` and `churn_events` (through Ibis, like the definitions) and knows nothing of
features or labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TypeAlias

import duckdb
import ibis
import pandas as pd

from features.contract.warehouse import connected_tables

log = logging.getLogger(__name__)

DateLike: TypeAlias = date | datetime | pd.Timestamp | str


def as_of_dates(values: Iterable[DateLike]) -> list[pd.Timestamp]:
    """Distinct, sorted midnights; a value with a time of day is refused (features are as of the
    start of a day)."""
    out = set()
    for i, v in enumerate(values):
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"as_of date {i + 1}: {v!r} is not a date ({exc})") from None
        if ts is pd.NaT:
            raise ValueError(f"as_of date {i + 1}: empty")
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        if ts != ts.normalize():
            raise ValueError(f"as_of date {i + 1}: {v!r} is not a date at midnight")
        out.add(ts)
    return sorted(out)


def build_entities(
    con: duckdb.DuckDBPyConnection,
    as_of: DateLike | Iterable[DateLike],
    account_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Active accounts at each date: `account_id` (str), `as_of` (datetime64[us]).

    Sorted by as_of, then account_id. With `account_ids`, only those accounts (an id that is
    unknown, not yet created or churned at a date simply has no row for that date).
    """
    dates = as_of_dates([as_of] if isinstance(as_of, DateLike) else as_of)
    empty = pd.DataFrame({"account_id": pd.Series([], dtype=str),
                          "as_of": pd.Series([], dtype="datetime64[us]")})
    if not dates:
        return empty
    connected = connected_tables(con)
    if "accounts" not in connected:
        raise ValueError("the warehouse has no accounts table: run `healthscore ingest` first")
    # Ibis changes session settings of the connection it wraps: a cursor keeps the caller's.
    cursor = con.cursor()
    try:
        out = _active(ibis.duckdb.from_connection(cursor), dates, account_ids, connected)
    finally:
        cursor.close()
    log.info("%d active account rows over %d as-of date(s)", len(out), len(dates))
    return pd.DataFrame(
        {
            "account_id": out["account_id"].astype(str).to_numpy(),
            "as_of": pd.to_datetime(out["as_of"]).to_numpy().astype("datetime64[us]"),
        }
    )


def _active(backend: ibis.BaseBackend, dates: list[pd.Timestamp],
            account_ids: Sequence[str] | None, connected: frozenset[str]) -> pd.DataFrame:
    d = ibis.memtable(pd.DataFrame({"as_of": pd.Series(dates).astype("datetime64[us]")}))
    acc = backend.table("accounts").select("account_id", "created_at")
    if account_ids is not None:
        acc = acc.filter(acc.account_id.isin([str(a) for a in account_ids]))
    pairs = d.cross_join(acc).filter(acc.created_at < d.as_of)
    if "churn_events" in connected:
        ce = backend.table("churn_events")
        if account_ids is not None:
            ce = ce.filter(ce.account_id.isin([str(a) for a in account_ids]))
        first = ce.group_by("account_id").aggregate(churned_at=ce.churned_at.min())
        pairs = pairs.left_join(first, pairs.account_id == first.account_id).filter(
            lambda t: t.churned_at.isnull() | (t.churned_at >= t.as_of)
        )
    expr = pairs.select("account_id", "as_of").order_by(["as_of", "account_id"])
    return backend.execute(expr)
