"""Usage anomalies: a window of an account's daily usage far from its own weekday pattern.

Usage has a strong weekly shape (weekdays busy, weekends quiet) and every account its own
level, so a fixed threshold on daily counts is either blind or noisy. For each account and
metric (product events, distinct active users) the detector reads the `history_weeks` weeks
before the window: each history week totalled over the window's weekdays, the median of those
totals is the account's expected window total (robust to one unusual week in the history), and
the account's weekday profile spreads it over the window's days (the evidence). The expected
total is scaled by the portfolio's common factor (the median ratio of observed to expected over
the accounts expecting at least `common_min_expected`: a holiday week or a product-wide outage
moves everyone, and is no account's anomaly).

The window's total is judged by a count test: its tail probability under a negative binomial
around the expected total, with the over-dispersion the account's own weekly totals show
(their robust variance beyond the Poisson one, at least `min_dispersion` since levels drift
with health, at most `max_dispersion`), as a standard normal z. One test serves every volume: a
few events a week are judged as counts (none of an expected three is common, none of an
expected fifteen is not), a large account by its relative spread. The window is anomalous when
|z| >= `z_threshold` and it moved by a share of the expected of at least `min_drop` down or
`min_spike` up and by at least `min_drop_events` / `min_spike_events` (an account's level
drifts by tens of percent over weeks, and a tiny account's handful is no alert). Accounts with
too little history are left out.

`judge_windows` is pure (a matrix of daily values in, evidence out); `daily_usage` reads the
matrix from the warehouse (rows strictly before the as-of date) and `detect_anomalies` joins the
two for one as-of date.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import nbinom, norm

from scoring.portfolio.settings import AnomalyConfig

METRICS: dict[str, str] = {"events": "count(*)", "active_users": "count(distinct user_id)"}
"""Daily usage metrics by name: their SQL over `usage_events` rows of one account and day."""
MAD_SCALE = 1.4826
"""MAD times this estimates the standard deviation of normal noise."""
COMMON_MIN_ACCOUNTS = 20
"""Fewer judged accounts than this and the portfolio's common factor is not estimated (1)."""
COMMON_BOUNDS = (0.2, 5.0)
DROP, SPIKE = "drop", "spike"
ANOMALY_COLUMNS = ("account_id", "metric", "window_start", "window_end", "expected",
                   "observed", "change", "z", "direction", "common_factor", "daily_expected",
                   "daily_observed")


@dataclass(frozen=True)
class Judgement:
    """Per account of one window: expected and observed totals, the count test's z (signed:
    the tail probability of the observed total as a standard normal quantile), its tail
    probability, the relative change, whether it was judged at all, the over-dispersion used
    and the per-day expected values."""

    expected: np.ndarray
    observed: np.ndarray
    z: np.ndarray
    p: np.ndarray
    change: np.ndarray
    judged: np.ndarray
    anomalous: np.ndarray
    dispersion: np.ndarray
    daily_expected: np.ndarray
    common: float


def count_tail(observed: np.ndarray, expected: np.ndarray, dispersion: np.ndarray
               ) -> np.ndarray:
    """Tail probability of each observed total under a negative binomial of mean `expected`
    and variance expected + dispersion * expected**2: P(X <= observed) below the mean,
    P(X >= observed) above it. Counts of a few events a week are judged by what a count can do
    (zero of an expected three is common, zero of an expected fifteen is not), large ones by
    their relative spread, with no cut between the two."""
    mean = np.maximum(np.asarray(expected, dtype=float), 1e-9)
    k = 1.0 / np.asarray(dispersion, dtype=float)
    q = k / (k + mean)
    obs = np.asarray(observed, dtype=float)
    low = nbinom.cdf(obs, k, q)
    high = nbinom.sf(np.ceil(obs) - 1.0, k, q)
    return np.where(obs < mean, low, high)


def judge_windows(values: np.ndarray, cfg: AnomalyConfig) -> Judgement:
    """Judge the last `window_days` columns of `values` (accounts x consecutive days, NaN where
    the account was not yet a customer) against the `history_weeks * 7` days before them."""
    weeks, window = cfg.history_weeks, cfg.window_days
    hist_days = weeks * 7
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[1] != hist_days + window:
        raise ValueError(f"judge_windows: need {hist_days + window} days per account "
                         f"({weeks} weeks of history and a {window}-day window), got "
                         f"{x.shape[1] if x.ndim == 2 else x.shape}")
    n = len(x)
    hist = x[:, :hist_days].reshape(n, weeks, 7)
    win = x[:, hist_days:]
    seen = ~np.isnan(hist)
    enough = (seen.sum(axis=(1, 2)) >= cfg.min_history_days) & (seen.sum(axis=1) >= 2).all(axis=1)
    # Window day t sits at position t mod 7 of the history's weeks (the history is whole weeks).
    pos = np.arange(window) % 7
    # Each history week as the window would have totalled it (its weekdays, in the window's
    # mix); a week with a day before the account's signup is left out.
    totals = hist[:, :, pos].sum(axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no whole week: not judged
        base = np.nanmedian(totals, axis=1)
        spread = MAD_SCALE * np.nanmedian(np.abs(totals - base[:, None]), axis=1)
        profile = np.nanmean(hist, axis=1)[:, pos]
    base = np.nan_to_num(base)
    # The weekday profile spreads the expected total over the window's days (evidence).
    weight = np.nan_to_num(profile)
    weight_sum = weight.sum(axis=1, keepdims=True)
    shape = np.where(weight_sum > 0, weight / np.where(weight_sum > 0, weight_sum, 1.0),
                     1.0 / window)
    observed = np.nansum(win, axis=1)
    judged = enough & ~np.isnan(win).any(axis=1) & (base >= cfg.min_expected) \
        & (np.isfinite(totals).sum(axis=1) >= cfg.min_history_weeks)
    common = 1.0
    sure = judged & (base >= cfg.common_min_expected)
    if sure.sum() >= COMMON_MIN_ACCOUNTS:
        common = float(np.clip(np.median(observed[sure] / base[sure]), *COMMON_BOUNDS))
    expected = np.maximum(base * common, cfg.min_rate)
    daily_exp = expected[:, None] * shape
    # Over-dispersion from the account's own weeks: the variance of its weekly totals beyond
    # the Poisson variance, relative to the level; at least `min_dispersion` (levels drift
    # with health by tens of percent over weeks), at most `max_dispersion`.
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(base > 0, (spread ** 2 - base) / base ** 2, 0.0)
    dispersion = np.clip(np.nan_to_num(own), cfg.min_dispersion, cfg.max_dispersion)
    p = count_tail(observed, expected, dispersion)
    z = np.sign(observed - expected) * np.maximum(norm.isf(np.clip(p, 1e-300, 1.0)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(expected > 0, (observed - expected) / expected, np.nan)
    moved = np.nan_to_num(change)
    drop = (moved <= -cfg.min_drop) & (expected - observed >= cfg.min_drop_events)
    spike = (moved >= cfg.min_spike) & (observed - expected >= cfg.min_spike_events)
    anomalous = judged & (np.abs(z) >= cfg.z_threshold) & (drop | spike)
    return Judgement(expected=expected, observed=observed, z=z, p=p, change=change,
                     judged=judged, anomalous=anomalous, dispersion=dispersion,
                     daily_expected=daily_exp, common=common)


def daily_usage(source: duckdb.DuckDBPyConnection, as_of: date, days: int,
                metrics: Sequence[str], account_ids: Sequence[str] | None = None
                ) -> tuple[list[str], pd.DatetimeIndex, dict[str, np.ndarray]]:
    """(accounts, days, metric -> accounts x days) of the `days` days before `as_of` (rows dated
    strictly before it), NaN on days before an account's signup and after its churn."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"portfolio.anomalies.metrics: unknown metric(s) {unknown}; known: "
                         f"{', '.join(METRICS)}")
    end = pd.Timestamp(as_of).normalize()
    start = end - pd.Timedelta(days=days)
    axis = pd.date_range(start, periods=days, freq="D")
    sql_metrics = ", ".join(f"{METRICS[m]} as {m}" for m in metrics)
    tables = {r[0] for r in source.execute("select table_name from information_schema.tables"
                                           ).fetchall()}
    churn = ("left join (select account_id, min(churned_at) as churned_at from churn_events "
             "group by account_id) c using (account_id)" if "churn_events" in tables else "")
    churned = "c.churned_at" if churn else "cast(null as timestamp)"
    with source.cursor() as cur:
        acc = cur.execute(f"select a.account_id, a.created_at, {churned} as churned_at "
                          f"from accounts a {churn} order by a.account_id").fetchdf()
        acc["account_id"] = acc["account_id"].astype(str)
        if account_ids is not None:
            acc = acc.set_index("account_id").reindex([str(a) for a in account_ids]) \
                .reset_index()
        rows = cur.execute(
            f"select account_id, cast(date_trunc('day', ts) as date) as day, {sql_metrics} "
            "from usage_events where ts >= ? and ts < ? group by 1, 2",
            [start.to_pydatetime(), end.to_pydatetime()]).fetchdf() \
            if "usage_events" in tables else pd.DataFrame(columns=["account_id", "day",
                                                                   *metrics])
    ids = acc["account_id"].tolist()
    row = pd.Index(ids).get_indexer(rows["account_id"].astype(str))
    col = ((pd.to_datetime(rows["day"]) - start) // pd.Timedelta(days=1)).to_numpy(np.int64) \
        if len(rows) else np.zeros(0, dtype=np.int64)
    keep = (row >= 0) & (col >= 0) & (col < days)
    created = pd.to_datetime(acc["created_at"]).dt.normalize().to_numpy("datetime64[D]")
    churned_at = pd.to_datetime(acc["churned_at"]).dt.normalize().to_numpy("datetime64[D]")
    day = axis.to_numpy().astype("datetime64[D]")
    outside = (day[None, :] < created[:, None]) | (day[None, :] >= churned_at[:, None])
    out: dict[str, np.ndarray] = {}
    for m in metrics:
        grid = np.zeros((len(ids), days))
        grid[row[keep], col[keep]] = rows[m].to_numpy(dtype=float)[keep]
        grid[outside] = np.nan
        out[m] = grid
    return ids, axis, out


def detect_anomalies(source: duckdb.DuckDBPyConnection, as_of: date, cfg: AnomalyConfig,
                     account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The anomalous windows ending the day before `as_of`, one row per account and metric,
    with their evidence (ANOMALY_COLUMNS)."""
    span = cfg.history_weeks * 7 + cfg.window_days
    ids, axis, grids = daily_usage(source, as_of, span, cfg.metrics, account_ids)
    return anomalies_of(ids, axis, grids, cfg)


def anomalies_of(ids: Sequence[str], axis: pd.DatetimeIndex, grids: dict[str, np.ndarray],
                 cfg: AnomalyConfig) -> pd.DataFrame:
    """The anomalous (account, metric) windows of matrices `daily_usage` returned."""
    start, end = axis[-cfg.window_days].date(), axis[-1].date()
    rows = []
    for metric, grid in grids.items():
        got = judge_windows(grid, cfg)
        for i in np.flatnonzero(got.anomalous):
            rows.append({
                "account_id": ids[i], "metric": metric, "window_start": start,
                "window_end": end, "expected": round(float(got.expected[i]), 2),
                "observed": float(got.observed[i]), "change": round(float(got.change[i]), 4),
                "z": round(float(got.z[i]), 2),
                "direction": DROP if got.observed[i] < got.expected[i] else SPIKE,
                "common_factor": round(got.common, 4),
                "daily_expected": [round(float(v), 2) for v in got.daily_expected[i]],
                "daily_observed": [float(v) for v in grid[i, -cfg.window_days:]]})
    return pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS))


def describe(row: dict[str, object]) -> str:
    """The alert message: what moved, by how much, against what, over which days."""
    change = float(row["change"])  # type: ignore[arg-type]
    what = "active users" if row["metric"] == "active_users" else "product events"
    move = f"{'fell' if row['direction'] == DROP else 'rose'} {abs(change):.0%}"
    return (f"{what} {move} against the account's own weekday pattern: {row['observed']:.0f} "
            f"observed vs {row['expected']:.0f} expected from {row['window_start']} to "
            f"{row['window_end']} (z {row['z']})")
