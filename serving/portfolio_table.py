"""The portfolio as the dashboard lists it: one row per active account, filtered, sorted, paged
and exported, with the KPIs over it.

Every number comes from the portfolio the one pipeline scored (`ServiceState.portfolio`, made by
`scoring.pipeline.score_accounts`, the same frame `compareSegment` and `predict` read): the
score, band, trend, dimensions, flags and the calibrated probabilities. The warehouse's
`accounts` table adds who owns each account; the lifecycle stage is the one
`scoring.portfolio.lifecycle` derives from the same frame, as the daily job records it. The
table is built once per warehouse snapshot and rules version. Pure functions below the one
reading `table`; no HTTP here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from scoring.pipeline import longest_label
from scoring.portfolio.lifecycle import lifecycle_stages
from serving.errors import Unavailable
from serving.state import ServiceState
from serving.store import DIMENSIONS, HealthScoreRecord

ATTRIBUTES: tuple[str, ...] = ("segment", "owner", "lifecycle")
"""The columns the table is filtered by besides band and flag. A column the warehouse does not
have (no `owner`) is left out of the table, and so out of the filters."""

SORTS: dict[str, str] = {
    "score": "score", "band": "band_rank", "trend": "change", "churn": "churn",
    "expansion": "expansion", "arr": "arr", "renewal": "renewal", "name": "name",
    **{d: f"dim_{d}" for d in DIMENSIONS},
}
"""Sort keys the table accepts, by the column each sorts on."""

EXPORT_COLUMNS: tuple[str, ...] = (
    "account_id", "name", "score", "band", "status", "trend", "change",
    *(f"dim_{d}" for d in DIMENSIONS), "churn", "expansion", "arr", "renewal", "segment",
    "owner", "lifecycle", "flags")
AT_RISK = ("at-risk", "critical")


@dataclass(frozen=True)
class Filters:
    band: str | None = None
    segment: str | None = None
    owner: str | None = None
    lifecycle: str | None = None
    flag: str | None = None
    q: str | None = None
    """Part of the account's name or id, any case."""
    sort: str = "score"
    order: str = "asc"

    def active(self) -> dict[str, str]:
        return {k: v for k, v in (("band", self.band), ("segment", self.segment),
                                  ("owner", self.owner), ("lifecycle", self.lifecycle),
                                  ("flag", self.flag), ("q", self.q)) if v}


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    size: int


@dataclass(frozen=True)
class Choices:
    bands: list[str]
    flags: list[str]
    attributes: dict[str, list[str]] = field(default_factory=dict)


def table(state: ServiceState) -> pd.DataFrame:
    """The portfolio table of the warehouse's today (kept per snapshot and rules version)."""
    state.tick()
    portfolio = state.portfolio
    if portfolio is None:
        raise Unavailable("no scored portfolio: run `healthscore ingest` (and keep "
                          "serving.precompute on)")
    key = ("portfolio-table", state.snapshot.generation, state.rules.config_version,
           portfolio.as_of)
    return state.derive(key, lambda: _build(state, portfolio))  # type: ignore[no-any-return]


def _build(state: ServiceState, portfolio: Any) -> pd.DataFrame:
    s = portfolio.scores
    f = portfolio.features
    p = portfolio.probabilities
    out = pd.DataFrame({"account_id": s["account_id"].astype(str).to_numpy(),
                        "name": s["name"].astype("string").fillna(s["account_id"]).to_numpy()})
    for col in ("score", "previous_score", *(f"dim_{d}" for d in DIMENSIONS)):
        out[col] = pd.to_numeric(s[col], errors="coerce").to_numpy()
    for col in ("band", "colour", "status", "trend", "grade", "profile"):
        out[col] = s[col].astype("string").to_numpy()
    out["change"] = out["score"] - out["previous_score"]
    order = {b.name: b.min for b in state.rules.default.bands}
    out["band_rank"] = out["band"].map(order).astype(float)
    out["flags"] = [[str(f["code"]) for f in v] if isinstance(v, (list, tuple, np.ndarray))
                    else [] for v in s["flags"]]
    for target in ("churn", "expansion"):
        label = f"{target}_90d" if f"{target}_90d" in p.columns \
            else longest_label(p.columns, target)
        out[target] = p[label].to_numpy(dtype=float) if label else np.nan
    out["arr"] = pd.to_numeric(f["arr"], errors="coerce").to_numpy() if "arr" in f else np.nan
    if "days_to_renewal" in f:
        days = pd.to_numeric(f["days_to_renewal"], errors="coerce")
        out["renewal"] = (pd.Timestamp(portfolio.as_of)
                          + pd.to_timedelta(days, unit="D")).dt.date.to_numpy()
    else:
        out["renewal"] = None
    attrs = _account_attributes(state)
    stages = lifecycle_stages(portfolio, state.settings.portfolio.lifecycle)
    out["lifecycle"] = out["account_id"].map(
        dict(zip(stages["account_id"], stages["stage"], strict=True))).astype("string")
    if "segment" in f:
        out["segment"] = f["segment"].astype("string").to_numpy()
    for col in ATTRIBUTES:
        if col in s.columns:  # a stage the pipeline scores with wins over the warehouse's
            out[col] = s[col].astype("string").to_numpy()
        elif col not in out and col in attrs:
            out[col] = out["account_id"].map(attrs[col]).astype("string").to_numpy()
    return out


def _account_attributes(state: ServiceState) -> dict[str, dict[str, Any]]:
    """owner (and lifecycle, where the warehouse has one) per account id."""
    con = state.snapshot.cursor()
    try:
        have = {r[0] for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_name = 'accounts'").fetchall()}
        wanted = [c for c in ATTRIBUTES if c in have and c != "segment"]
        if not wanted:
            return {}
        rows = con.execute(f"select account_id, {', '.join(wanted)} from accounts").fetchall()
    finally:
        con.close()
    return {c: {str(r[0]): r[i + 1] for r in rows} for i, c in enumerate(wanted)}


def choices(frame: pd.DataFrame, band_order: Sequence[str]) -> Choices:
    """What each filter can be set to: the values the table holds."""
    flags = sorted({code for v in frame["flags"] for code in v})
    attrs = {c: sorted(frame[c].dropna().astype(str).unique().tolist())
             for c in ATTRIBUTES if c in frame}
    return Choices(bands=[b for b in band_order if b in set(frame["band"].dropna())],
                   flags=flags, attributes={c: v for c, v in attrs.items() if v})


def select_rows(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows the filters keep, in the order asked (ties by account id)."""
    keep = np.ones(len(frame), dtype=bool)
    for col in ("band", *ATTRIBUTES):
        value = getattr(filters, col)
        if value and col in frame:
            keep &= (frame[col] == value).fillna(False).to_numpy(dtype=bool)
        elif value:
            keep &= False
    if filters.flag:
        keep &= np.fromiter((filters.flag in v for v in frame["flags"]), bool, len(frame))
    if filters.q:
        q = filters.q.strip().lower()
        keep &= (frame["name"].str.lower().str.contains(q, regex=False).fillna(False)
                 | frame["account_id"].str.lower().str.contains(q, regex=False)).to_numpy(bool)
    rows = frame[keep]
    col = SORTS.get(filters.sort, "score")
    return rows.sort_values([col, "account_id"], ascending=[filters.order != "desc", True],
                            na_position="last", kind="stable")


def page_of(rows: pd.DataFrame, page: int, size: int) -> Page:
    total = len(rows)
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    part = rows.iloc[(page - 1) * size: page * size]
    return Page(rows=part.to_dict("records"), total=total, page=page, pages=pages, size=size)


def export_csv(rows: pd.DataFrame) -> str:
    """Exactly `rows` as CSV (flags joined by `;`)."""
    out = rows[[c for c in EXPORT_COLUMNS if c in rows]].copy()
    out["flags"] = [";".join(v) for v in out["flags"]]
    return out.to_csv(index=False, float_format="%.4f")


def kpis(frame: pd.DataFrame, top_band: str) -> dict[str, Any]:
    """The portfolio's cards: counts, the average score and its change over the trend window,
    ARR at risk and the expansion pipeline (ARR weighted by the expansion probability)."""
    score = frame["score"]
    at_risk = frame["status"].isin(AT_RISK).to_numpy(bool)
    arr = frame["arr"].fillna(0.0)
    both = frame[["score", "previous_score"]].dropna()
    return {
        "accounts": len(frame),
        "average": _round(score.mean()),
        "average_change": _round(both["score"].mean() - both["previous_score"].mean())
        if len(both) else None,
        "at_risk": int(at_risk.sum()),
        "champions": int((frame["band"] == top_band).sum()),
        "arr_at_risk": float(arr[at_risk].sum()),
        "expansion_pipeline": float((arr * frame["expansion"].fillna(0.0)).sum()),
    }


def histogram(values: pd.Series, bins: int = 20) -> dict[str, list[float]]:
    """Accounts per probability bin (0-1 in `bins` equal steps), for a bar chart."""
    v = values.dropna().to_numpy(dtype=float)
    counts, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    return {"x": [round(float((a + b) / 2), 4) for a, b in zip(edges[:-1], edges[1:],
                                                              strict=True)],
            "y": [int(c) for c in counts], "width": 1.0 / bins}


def average_over_time(state: ServiceState, bucket_seconds: int = 60) -> list[tuple[date, float]]:
    """The average stored score of each scored date (the score store, as `/scores` reads it),
    kept for a minute: the daily job adds a date at a time."""
    import time

    R = HealthScoreRecord
    key = ("average-over-time", state.rules.config_version, int(time.time() // bucket_seconds))

    def make() -> list[tuple[date, float]]:
        with state.db.connect() as conn:
            rows = conn.execute(select(R.as_of, func.avg(R.score)).group_by(R.as_of)
                                .order_by(R.as_of)).all()
        return [(r[0], round(float(r[1]), 2)) for r in rows if r[1] is not None]

    return state.derive(key, make)  # type: ignore[no-any-return]


def _round(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), 2)
