"""Entity frames: which accounts are customers at which as-of dates.

This module owns the one rule of who is a customer when, and `build_entities`, the one way to
list (account_id, as_of) rows for features: training passes many dates, the daily batch one
date, the online path one date and one account. The rule (`status_at`), written once and used by
scoring's statuses and training's labels too:

- an account is **active** at the as-of date t when it started on or before t (its
  `created_at` falls on day t or earlier) and has not churned on or before t;
- it is **churned** at t when its first churn event falls on day t or earlier: an account that
  churns on t is not active at t (a churn on the as-of day is the present, not a prediction);
- it is **not-started** at t when it is created after day t.

Features as of t still see only rows dated strictly before t (`features/definitions.py`): the
as-of day itself counts for the status, not for the features. It reads only `accounts` and
`churn_events` and knows nothing of features or labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TypeAlias

import duckdb
import numpy as np
import pandas as pd

from features.contract.warehouse import connected_tables

log = logging.getLogger(__name__)

DateLike: TypeAlias = date | datetime | pd.Timestamp | str

ACTIVE, CHURNED, NOT_STARTED = "active", "churned", "not-started"
STATUSES = (ACTIVE, CHURNED, NOT_STARTED)
_DAY = np.timedelta64(1, "D")


def has_churned(churned_at: object, as_of: object) -> np.ndarray:
    """The churn (NaT: none) falls on the as-of day or earlier."""
    return np.asarray(churned_at, dtype="datetime64[us]") < \
        np.asarray(as_of, dtype="datetime64[us]") + _DAY  # NaT compares False


def status_at(created_at: object, churned_at: object, as_of: object) -> np.ndarray:
    """Each account's status at the as-of date(s): `active`, `churned` or `not-started`.

    `created_at` and `churned_at` (its first churn, NaT when none) are per account; `as_of` is a
    midnight or one midnight per account. Both events count from their calendar day: created on
    day t is active at t, churned on day t is churned at t."""
    created = np.asarray(created_at, dtype="datetime64[us]")
    day_after = np.asarray(as_of, dtype="datetime64[us]") + _DAY
    out = np.full(np.broadcast(created, day_after).shape, ACTIVE, dtype=object)
    out[np.broadcast_to(has_churned(churned_at, as_of), out.shape)] = CHURNED
    out[np.broadcast_to(~(created < day_after), out.shape)] = NOT_STARTED
    return out


def is_active(created_at: object, churned_at: object, as_of: object) -> np.ndarray:
    """`status_at(...) == active`, as a boolean mask."""
    return status_at(created_at, churned_at, as_of) == ACTIVE


def load_account_dates(con: duckdb.DuckDBPyConnection,
                       account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """`account_id`, `created_at` and the first `churned_at` (NaT when none) of each account,
    sorted by account_id: what `status_at` needs."""
    connected = connected_tables(con)
    if "accounts" not in connected:
        raise ValueError("the warehouse has no accounts table: run `healthscore ingest` first")
    churn = ("left join (select account_id, min(churned_at) as churned_at from churn_events "
             "group by account_id) c using (account_id)" if "churn_events" in connected else "")
    sql = (f"select a.account_id, a.created_at, "
           f"{'c.churned_at' if churn else 'cast(null as timestamp)'} as churned_at "
           f"from accounts a {churn}")
    params: list[object] = []
    if account_ids is not None:
        sql += " where a.account_id in (select unnest(?::varchar[]))"
        params.append([str(a) for a in account_ids])
    with con.cursor() as cur:
        got = cur.execute(sql + " order by a.account_id", params).fetchdf()
    return pd.DataFrame({
        "account_id": got["account_id"].astype(str).to_numpy(),
        "created_at": pd.to_datetime(got["created_at"]).to_numpy().astype("datetime64[us]"),
        "churned_at": pd.to_datetime(got["churned_at"]).to_numpy().astype("datetime64[us]"),
    })


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
    accounts = load_account_dates(con, account_ids)
    n = len(accounts)
    when = np.repeat(pd.DatetimeIndex(dates).to_numpy().astype("datetime64[us]"), n)
    rows = np.tile(np.arange(n), len(dates))
    keep = is_active(accounts["created_at"].to_numpy()[rows],
                     accounts["churned_at"].to_numpy()[rows], when)
    out = pd.DataFrame({"account_id": accounts["account_id"].to_numpy()[rows][keep],
                        "as_of": when[keep]})
    log.info("%d active account rows over %d as-of date(s)", len(out), len(dates))
    return out

