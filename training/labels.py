"""Churn and expansion labels for (account_id, as_of) entity rows.

`churn_{h}d` is 1 when the account churns within the h days that follow the as-of instant, and
`expansion_{h}d` when it expands. The as-of instant sits just before midnight of `as_of`: features
see rows dated strictly before `as_of`, labels see rows dated in `[as_of, as_of + h days)`. With
timestamps this is the spec's `(as_of, as_of + h]`; with day-granular data (most exports) it makes
a churn dated on the as-of day count as future, which it is. Nothing is dated in both.

Censoring: a window that runs past the end of the observed data gets no label (NaN), never 0: we
do not know yet. Accounts already churned at `as_of` get NaN too (callers exclude them earlier via
`features.entities.build_entities`). Expansion labels are NaN when `expansion_events` is not
connected. This module knows nothing of models.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from features.contract.warehouse import connected_tables, data_end


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

    churn_at = _first_event_after(con, "churn_events", "churned_at", ids, as_of, connected)
    churned_before = _churned_before(con, ids, as_of, connected)
    expand_at = (
        _first_event_after(con, "expansion_events", "ts", ids, as_of, connected)
        if "expansion_events" in connected
        else None
    )

    out = ents.copy()
    for h in horizons:
        horizon_end = as_of + np.timedelta64(h, "D")
        observed = (horizon_end <= np.datetime64(end.to_datetime64())) & ~churned_before
        churn = (churn_at < horizon_end).astype(float)
        out[f"churn_{h}d"] = np.where(observed, churn, np.nan)
    for h in horizons:
        if expand_at is None:
            out[f"expansion_{h}d"] = np.nan
            continue
        horizon_end = as_of + np.timedelta64(h, "D")
        observed = (horizon_end <= np.datetime64(end.to_datetime64())) & ~churned_before
        out[f"expansion_{h}d"] = np.where(observed, (expand_at < horizon_end).astype(float), np.nan)
    return out


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
    """Per entity row, the first event at or after as_of (NaT-like max when none)."""
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


def _churned_before(
    con: duckdb.DuckDBPyConnection, ids: np.ndarray, as_of: np.ndarray, connected: frozenset[str]
) -> np.ndarray:
    """Per entity row: the account churned strictly before as_of (it has no future to label)."""
    if "churn_events" not in connected or len(ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    rows = _query_with_entities(
        con, ids, as_of,
        """
        select distinct e.row from ents e join churn_events c
          on c.account_id = e.account_id and c.churned_at < e.as_of
        """,
    )
    out = np.zeros(len(ids), dtype=bool)
    out[rows["row"].to_numpy()] = True
    return out
