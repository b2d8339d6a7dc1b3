"""The usage features of `features/definitions.py`, computed in pandas two ways.

The baselines the scale bench compares the DuckDB build with, on the same entities and the same
rows (those inside the longest window, fetched from the warehouse):

- `plain_usage_features`: plain pandas groupby, as a data scientist writes it: per as-of date,
  filter the rows into each window and `groupby("account_id")` with `nunique`, `sum`, `max`,
  one boolean filter per event type; ids stay the strings they are.
- `usage_features`: what a careful pandas and numpy implementation costs. Careful means: read only
the columns and the rows inside the longest window (90 days before the latest as-of date),
turn account and user ids into integer codes and dates into day numbers once, and compute every
window of one as-of date with vectorised masks and groupbys on integers (distinct counts as
`drop_duplicates` then `size`). It computes the usage table's features (the table holding
nearly every row), not those of the small tables, and leaves out the two divided by contracted
seats (a division by a subscriptions feature) and the days-since fallback for rows older than
the lookback: the values it does compute equal the product's (the bench checks it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from features.event_types import EventType

LOOKBACK = 90
"""Days of usage the features read (`features.definitions.USAGE_LOOKBACK_DAYS`)."""

COMPARED = ("active_users_7d", "active_users_30d", "active_users_90d", "logins_30d",
            "logins_pct_change_30d", "active_days_30d", "events_7d", "events_30d", "events_90d",
            "events_pct_change_30d", "features_used_30d", "features_used_90d",
            "features_used_change_30d")
"""The registry's usage features the baseline computes (with days_since_last_activity inside
the lookback and every event-type feature)."""


def _window(ents: pd.DataFrame) -> list[pd.Timestamp]:
    """[start, end) of the usage rows any entity can see: the longest window before the
    earliest as-of date, up to the latest."""
    return [ents["as_of"].min() - pd.Timedelta(days=LOOKBACK), ents["as_of"].max()]


def load_usage(con: duckdb.DuckDBPyConnection, ents: pd.DataFrame
               ) -> tuple[pd.DataFrame, pd.Index]:
    """The usage rows any entity can see, with integer keys: `acct` (code of account_id in the
    sorted entity ids, rows of other accounts dropped), `user` (code, -1 without one), `day`
    (days since 1970), `event` (category), `quantity` (1 where unknown); and the sorted ids."""
    usage = con.execute(
        "select account_id, user_id, ts, event, coalesce(cast(quantity as double), 1.0) "
        "as quantity from usage_events where ts >= ? and ts < ?", _window(ents)).df()
    ids = pd.Index(np.sort(ents["account_id"].unique()))
    acct = ids.get_indexer(usage["account_id"])
    keep = acct >= 0
    user = pd.Categorical(usage["user_id"]).codes
    return pd.DataFrame({
        "acct": acct[keep].astype(np.int64),
        "user": user[keep].astype(np.int64),
        "day": (usage["ts"].to_numpy()[keep].astype("datetime64[D]").astype(np.int64)),
        "event": pd.Categorical(usage["event"].to_numpy()[keep]),
        "quantity": usage["quantity"].to_numpy()[keep],
    }), ids


def _distinct(frame: pd.DataFrame, mask: np.ndarray, keys: Sequence[str], n: int) -> np.ndarray:
    """Distinct `keys` tuples per account among the rows of `mask`, as a dense array."""
    pairs = frame.loc[mask, ["acct", *keys]].drop_duplicates()
    return np.bincount(pairs["acct"].to_numpy(), minlength=n).astype(float)


def _sum(frame: pd.DataFrame, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(frame["acct"].to_numpy()[mask], weights=frame["quantity"].to_numpy()[mask],
                       minlength=n)


def _pct(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(previous == 0, np.nan, (current - previous) * 100.0 / previous)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den == 0, np.nan, num / den)


def usage_features(usage: pd.DataFrame, ids: pd.Index, ents: pd.DataFrame,
                   types: Sequence[EventType]) -> pd.DataFrame:
    """One row per entity row (in its order): the baseline's features."""
    n = len(ids)
    parts = []
    for as_of, group in ents.groupby("as_of", sort=True):
        as_day = np.datetime64(as_of, "D").astype(np.int64)
        ago = as_day - usage["day"].to_numpy()
        win = (ago >= 1) & (ago <= LOOKBACK)
        u, ago = usage[win], ago[win]
        known = u["user"].to_numpy() >= 0
        in7, in30 = ago <= 7, ago <= 30
        prev = (ago > 30) & (ago <= 60)
        out: dict[str, np.ndarray] = {
            "active_users_7d": _distinct(u, in7 & known, ["user"], n),
            "active_users_30d": _distinct(u, in30 & known, ["user"], n),
            "active_users_90d": _distinct(u, known, ["user"], n),
        }
        logins = _distinct(u, in30 & known, ["user", "day"], n)
        out["logins_30d"] = logins
        out["logins_pct_change_30d"] = _pct(logins, _distinct(u, prev & known, ["user", "day"], n))
        out["active_days_30d"] = _distinct(u, in30, ["day"], n)
        last = np.full(n, np.iinfo(np.int64).min)
        np.maximum.at(last, u["acct"].to_numpy(), u["day"].to_numpy())
        out["days_since_last_activity"] = np.where(last == np.iinfo(np.int64).min, np.nan,
                                                   as_day - last)
        e30 = _sum(u, in30, n)
        out["events_7d"], out["events_30d"], out["events_90d"] = _sum(u, in7, n), e30, \
            _sum(u, np.ones(len(u), bool), n)
        out["events_pct_change_30d"] = _pct(e30, _sum(u, prev, n))
        used30 = _distinct(u, in30, ["event"], n)
        out["features_used_30d"] = used30
        out["features_used_90d"] = _distinct(u, np.ones(len(u), bool), ["event"], n)
        out["features_used_change_30d"] = used30 - _distinct(u, prev, ["event"], n)
        events = u["event"].astype(object).to_numpy()
        for t in types:
            mine = np.isin(events, list(t.names)) if t.names else np.zeros(len(u), bool)
            t30 = _sum(u, mine & in30, n)
            stem = f"event_{t.slug}_"
            out[stem + "7d"] = _sum(u, mine & in7, n)
            out[stem + "30d"] = t30
            out[stem + "90d"] = _sum(u, mine, n)
            out[stem + "per_active_day_30d"] = _ratio(t30, out["active_days_30d"])
            out[stem + "share_30d"] = _ratio(t30, e30)
            out[stem + "change_30d"] = t30 - _sum(u, mine & prev, n)
        rows = ids.get_indexer(group["account_id"])
        part = pd.DataFrame({k: v[rows] for k, v in out.items()}, index=group.index)
        parts.append(part)
    return pd.concat(parts).loc[ents.index].reset_index(drop=True)


def load_rows(con: duckdb.DuckDBPyConnection, ents: pd.DataFrame) -> pd.DataFrame:
    """The usage rows inside the longest window before any entity's as-of date, as they are
    stored (string ids, timestamps, quantities with nulls)."""
    return con.execute(
        "select account_id, user_id, ts, event, quantity from usage_events "
        "where ts >= ? and ts < ?", _window(ents)).df()


def _per_account(values: pd.Series, accounts: pd.Index) -> pd.Series:
    """`values` on every entity account, 0 where it has no rows."""
    return values.reindex(accounts).fillna(0)


def _logins(rows: pd.DataFrame) -> pd.Series:
    """Distinct (user, day) pairs per account: what logins count."""
    days = rows.dropna(subset=["user_id"]).drop_duplicates(["account_id", "user_id", "day"])
    return days.groupby("account_id").size()


def plain_usage_features(usage: pd.DataFrame, ents: pd.DataFrame,
                         types: Sequence[EventType]) -> pd.DataFrame:
    """`usage_features`' columns with plain pandas groupby on `load_rows`' frame: one groupby
    per window and as-of date, each read for every aggregate of that window."""
    usage = usage.assign(day=usage["ts"].dt.floor("D"),
                         quantity=usage["quantity"].astype(float).fillna(1.0))
    parts = []
    for as_of, group in ents.groupby("as_of", sort=True):
        as_day = pd.Timestamp(as_of).floor("D")
        ago = (as_day - usage["day"]).dt.days
        u = usage[(ago >= 1) & (ago <= LOOKBACK)].assign(ago=ago)
        in7, in30 = u[u["ago"] <= 7], u[u["ago"] <= 30]
        prev = u[(u["ago"] > 30) & (u["ago"] <= 60)]
        g7, g30, g90, gprev = (rows.groupby("account_id") for rows in (in7, in30, u, prev))
        accounts = pd.Index(group["account_id"].unique(), name="account_id")
        per_account = functools.partial(_per_account, accounts=accounts)

        f = pd.DataFrame({
            "active_users_7d": per_account(g7["user_id"].nunique()),
            "active_users_30d": per_account(g30["user_id"].nunique()),
            "active_users_90d": per_account(g90["user_id"].nunique()),
            "logins_30d": per_account(_logins(in30)),
            "active_days_30d": per_account(g30["day"].nunique()),
            "events_7d": per_account(g7["quantity"].sum()),
            "events_30d": per_account(g30["quantity"].sum()),
            "events_90d": per_account(g90["quantity"].sum()),
            "features_used_30d": per_account(g30["event"].nunique()),
            "features_used_90d": per_account(g90["event"].nunique()),
        }, index=accounts)
        f["days_since_last_activity"] = (as_day - g90["day"].max()).dt.days
        f["logins_pct_change_30d"] = _pct(f["logins_30d"].to_numpy(),
                                          per_account(_logins(prev)).to_numpy())
        f["events_pct_change_30d"] = _pct(f["events_30d"].to_numpy(),
                                          per_account(gprev["quantity"].sum()).to_numpy())
        f["features_used_change_30d"] = f["features_used_30d"] \
            - per_account(gprev["event"].nunique())
        for t in types:
            stem = f"event_{t.slug}_"
            mine = u[u["event"].isin(list(t.names))]
            sums = {window: per_account(rows.groupby("account_id")["quantity"].sum())
                    for window, rows in (("7d", mine[mine["ago"] <= 7]),
                                         ("30d", mine[mine["ago"] <= 30]), ("90d", mine),
                                         ("prev", mine[(mine["ago"] > 30) & (mine["ago"] <= 60)]))}
            for window in ("7d", "30d", "90d"):
                f[stem + window] = sums[window]
            f[stem + "per_active_day_30d"] = _ratio(sums["30d"].to_numpy(),
                                                    f["active_days_30d"].to_numpy())
            f[stem + "share_30d"] = _ratio(sums["30d"].to_numpy(), f["events_30d"].to_numpy())
            f[stem + "change_30d"] = sums["30d"] - sums["prev"]
        part = f.reindex(group["account_id"].to_numpy())
        part.index = group.index
        parts.append(part)
    return pd.concat(parts).loc[ents.index].reset_index(drop=True)


def compare(product: pd.DataFrame, baseline: pd.DataFrame) -> list[str]:
    """The baseline's columns that differ from the product's frame (days since only where the
    baseline has a value: it does not look back beyond the lookback)."""
    bad = []
    for name in baseline.columns:
        got, want = baseline[name].to_numpy(float), product[name].to_numpy(float)
        if name == "days_since_last_activity":
            keep = ~np.isnan(got)
            got, want = got[keep], want[keep]
        if not np.allclose(got, want, equal_nan=True, rtol=1e-9, atol=1e-9):
            bad.append(name)
    return bad
