"""Churn and expansion labels for (account_id, as_of) entity rows.

`churn_{h}d` is 1 when the account churns within the h days that follow the as-of day, and
`expansion_{h}d` when it expands: rows dated in `[as_of + 1 day, as_of + 1 day + h days)`.
Only an account active at the as-of date has a future to label (`features.entities.status_at`,
the rule scoring and the training entities follow): one that churned on or before the as-of
day, the as-of day itself included, or that is created after it, gets no label (NaN). So a churn
dated on the as-of day is neither an easy positive nor a label at all: the account is not a
customer being scored that day. Features see rows dated strictly before `as_of`; the as-of day
itself decides only the status. Nothing is dated in both.

Censoring: a window that runs past the end of the observed data gets no label (NaN), never 0: we
do not know yet. Expansion labels are NaN when `expansion_events` is not connected. This module
knows nothing of models.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from features.contract.warehouse import connected_tables, data_end
from features.entities import is_active, load_account_dates

HORIZON_START = np.timedelta64(1, "D")
"""A horizon starts the day after the as-of day (the as-of day itself decides the status)."""


def last_labelled_date(con: duckdb.DuckDBPyConnection, horizon: int,
                       end: pd.Timestamp | None = None) -> pd.Timestamp:
    """The last as-of date whose `horizon`-day window ends within the observed data."""
    end = data_end(con) if end is None else pd.Timestamp(end)
    return end - pd.Timedelta(HORIZON_START) - pd.Timedelta(days=horizon)


def label_names(horizons: Sequence[int]) -> list[str]:
    return [f"{t}_{h}d" for t in ("churn", "expansion") for h in horizons]


def build_labels(
    con: duckdb.DuckDBPyConnection,
    entities: pd.DataFrame,
    horizons: Sequence[int] = (30, 60, 90),
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Labels for each entity row, in the same order: account_id, as_of, churn_*, expansion_*."""
    end = data_end(con) if end is None else pd.Timestamp(end)
    ents = entities[["account_id", "as_of"]].reset_index(drop=True)
    as_of = pd.to_datetime(ents["as_of"]).to_numpy("datetime64[ns]")
    ids = ents["account_id"].astype(str).to_numpy()
    connected = connected_tables(con)

    start = as_of + HORIZON_START
    churn_at = _first_event_after(con, "churn_events", "churned_at", ids, start, connected)
    active = _active(con, ids, as_of)
    expand_at = (
        _first_event_after(con, "expansion_events", "ts", ids, start, connected)
        if "expansion_events" in connected
        else None
    )

    out = ents.copy()
    last = np.datetime64(end.to_datetime64())
    for h in horizons:
        horizon_end = start + np.timedelta64(h, "D")
        observed = (horizon_end <= last) & active
        churn = (churn_at < horizon_end).astype(float)
        out[f"churn_{h}d"] = np.where(observed, churn, np.nan)
    for h in horizons:
        if expand_at is None:
            out[f"expansion_{h}d"] = np.nan
            continue
        horizon_end = start + np.timedelta64(h, "D")
        observed = (horizon_end <= last) & active
        out[f"expansion_{h}d"] = np.where(observed, (expand_at < horizon_end).astype(float), np.nan)
    return out


def _active(con: duckdb.DuckDBPyConnection, ids: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Per entity row: the account is active at its as-of date (unknown ids are not)."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    accounts = load_account_dates(con, sorted(set(ids.tolist()))).set_index("account_id")
    known = np.isin(ids, accounts.index.to_numpy())
    rows = accounts.reindex(ids)
    return known & is_active(rows["created_at"].to_numpy(), rows["churned_at"].to_numpy(),
                             as_of)


def _query_with_entities(
    con: duckdb.DuckDBPyConnection, ids: np.ndarray, as_of: np.ndarray, sql: str
) -> pd.DataFrame:
    """Run `sql` with the entity rows registered as the view `ents` (row, account_id, as_of).

    The frame is registered explicitly rather than found by DuckDB's scan of Python locals:
    Ibis switches that scan off on connections it wraps, and the feature code shares them.
    """
    frame = pd.DataFrame({"row": np.arange(len(ids)), "account_id": ids, "as_of": as_of})
    cur = con.cursor()
    cur.register("ents", frame)
    try:
        return cur.execute(sql).fetchdf()
    finally:
        cur.unregister("ents")
        cur.close()


def _first_event_after(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    ids: np.ndarray,
    as_of: np.ndarray,
    connected: frozenset[str],
) -> np.ndarray:
    """Per entity row, the first event at or after `as_of` (the horizon's start; a far-future
    date when none)."""
    never = np.full(len(ids), np.datetime64("2262-01-01"), dtype="datetime64[ns]")
    if table not in connected or len(ids) == 0:
        return never
    rows = _query_with_entities(
        con, ids, as_of,
        f"""
        select e.row, min(t."{column}") as first_at
        from ents e join "{table}" t
          on t.account_id = e.account_id and t."{column}" >= e.as_of
        group by e.row
        """,
    )
    out = never.copy()
    out[rows["row"].to_numpy()] = pd.to_datetime(rows["first_at"]).to_numpy("datetime64[ns]")
    return out

