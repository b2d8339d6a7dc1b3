"""The read side of portfolio intelligence for the API: value tiers and classes, RFM, lifecycle
stages, an account's journey and the stored usage anomalies.

Value, RFM and stages are computed from the active accounts of the portfolio the one pipeline
scored (the service's precomputed portfolio for the warehouse's today, else a `score_accounts`
call for the date asked), each kept per snapshot, rules version and date in the state's LRU;
the journey and the anomalies are read from the store, where the daily job wrote them.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from scoring.pipeline import ScoredFrame
from scoring.portfolio.inputs import column
from scoring.portfolio.lifecycle import lifecycle_stages
from scoring.portfolio.rfm import quintile_edges, rfm_scores
from scoring.portfolio.value import value_scores
from serving.errors import PayloadError
from serving.portfolio_store import JourneyEntry, UsageAnomaly
from serving.schemas import portfolio as out
from serving.state import ServiceState


def _num(value: Any) -> float | None:
    try:
        got = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(got) else got


def _str(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else str(value)


EARLIEST, LATEST = date(1900, 1, 1), date(2200, 1, 1)
"""The as-of dates a portfolio view is computed for (timestamps beyond them do not exist)."""


def active_frame(state: ServiceState, as_of: date | None) -> ScoredFrame:
    """The active accounts scored by the pipeline as of `as_of` (None: the warehouse's
    today)."""
    if as_of is not None and not EARLIEST <= as_of <= LATEST:
        raise PayloadError(["query", "asOf"], f"must be between {EARLIEST} and {LATEST}")
    state.tick()
    return state.scored_at(as_of or state.default_as_of, trend=True).active()


def _view(state: ServiceState, name: str, as_of: date | None, make: Any
          ) -> tuple[date, pd.DataFrame, ScoredFrame]:
    frame = active_frame(state, as_of)
    key = (state.snapshot.generation, state.rules.config_version, name, frame.as_of)
    return frame.as_of, state.derive(key, lambda: make(frame)), frame


def _page(rows: pd.DataFrame, limit: int, offset: int) -> list[dict[str, Any]]:
    return rows.iloc[offset:offset + limit].to_dict("records")


def value(state: ServiceState, as_of: date | None, tier: str | None, segment: str | None,
          limit: int, offset: int) -> out.ValuePage:
    cfg = state.settings.portfolio
    when, rows, _ = _view(state, "value", as_of, lambda f: value_scores(f, cfg))
    tiers, segments = Counter(rows["tier"]), Counter(rows["segment"])
    if tier:
        rows = rows[rows["tier"] == tier]
    if segment:
        # Any account qualifying for the class; Standard is the segment of those with none.
        keep = np.array([seg == segment or any(c["class"] == segment for c in cs)
                         for seg, cs in zip(rows["segment"], rows["classes"], strict=True)],
                        dtype=bool)
        rows = rows.loc[keep]
    rows = rows.sort_values("value_score", ascending=False, na_position="last", kind="stable")
    items = [out.ValueItem(
        accountId=r["account_id"], name=_str(r["name"]), arr=_num(r["arr"]),
        arrPercentile=_num(r["arr_percentile"]),
        expansionProbability=_num(r["expansion_probability"]), nps=_num(r["nps"]),
        valueScore=_num(r["value_score"]), tier=r["tier"], tierReason=r["tier_reason"],
        segment=r["segment"], segmentReason=r["segment_reason"],
        classes=[out.ClassReason(name=c["class"], reason=c["reason"]) for c in r["classes"]])
        for r in _page(rows, limit, offset)]
    return out.ValuePage(asOf=when, total=len(rows), tiers=dict(tiers),
                         segments=dict(segments), items=items)


def rfm(state: ServiceState, as_of: date | None, segment: str | None, limit: int,
        offset: int) -> out.RfmPage:
    cfg = state.settings.portfolio.rfm
    when, rows, frame = _view(state, "rfm", as_of, lambda f: rfm_scores(f, cfg))
    quintiles = {"recency": quintile_edges(column(frame, cfg.recency_column)),
                 "frequency": quintile_edges(column(frame, cfg.frequency_column)),
                 "monetary": quintile_edges(column(frame, cfg.monetary_column))}
    segments = Counter(rows["segment"])
    if segment:
        rows = rows[rows["segment"] == segment]
    rows = rows.sort_values(["rfm", "account_id"], ascending=[False, True], kind="stable")
    items = [out.RfmItem(accountId=r["account_id"], name=_str(r["name"]),
                         recencyDays=_num(r["recency_days"]),
                         frequency30d=_num(r["frequency_30d"]), monetary=_num(r["monetary"]),
                         r=int(r["r"]), f=int(r["f"]), m=int(r["m"]), rfm=r["rfm"],
                         segment=r["segment"], reason=r["reason"])
             for r in _page(rows, limit, offset)]
    return out.RfmPage(asOf=when, total=len(rows), quintiles=quintiles,
                       segments=dict(segments), items=items)


def _stage_item(r: dict[str, Any]) -> out.StageItem:
    return out.StageItem(accountId=r["account_id"], name=_str(r["name"]), stage=r["stage"],
                         cause=r["cause"], tenureDays=_num(r["tenure_days"]),
                         usagePctChange=_num(r["usage_pct_change"]),
                         daysToRenewal=_num(r["days_to_renewal"]), band=_str(r["band"]))


def stages(state: ServiceState, as_of: date | None, stage: str | None, limit: int,
           offset: int) -> out.StagePage:
    cfg = state.settings.portfolio.lifecycle
    when, rows, _ = _view(state, "lifecycle", as_of, lambda f: lifecycle_stages(f, cfg))
    counts = Counter(rows["stage"])
    if stage:
        rows = rows[rows["stage"] == stage]
    return out.StagePage(asOf=when, total=len(rows), stages=dict(counts),
                         items=[_stage_item(r) for r in _page(rows, limit, offset)])


def journey(state: ServiceState, account_id: str, as_of: date | None) -> out.Journey:
    state.known(account_id)
    cfg = state.settings.portfolio.lifecycle
    when, rows, _ = _view(state, "lifecycle", as_of, lambda f: lifecycle_stages(f, cfg))
    mine = rows[rows["account_id"] == account_id].to_dict("records")
    with Session(state.db) as session:
        entries = session.scalars(select(JourneyEntry).where(
            JourneyEntry.account_id == account_id).order_by(JourneyEntry.as_of)).all()
        past = [out.JourneyEntryOut(asOf=e.as_of, stage=e.stage, fromStage=e.from_stage,
                                    cause=e.cause, recordedAt=e.recorded_at) for e in entries]
    return out.Journey(accountId=account_id, asOf=when,
                       current=_stage_item(mine[0]) if mine else None, journey=past)


def anomalies(state: ServiceState, account_id: str | None, metric: str | None,
              start: date | None, end: date | None, limit: int, offset: int
              ) -> list[out.AnomalyOut]:
    stmt = select(UsageAnomaly).order_by(UsageAnomaly.as_of.desc(), UsageAnomaly.id.desc())
    if account_id:
        stmt = stmt.where(UsageAnomaly.account_id == account_id)
    if metric:
        stmt = stmt.where(UsageAnomaly.metric == metric)
    if start:
        stmt = stmt.where(UsageAnomaly.as_of >= start)
    if end:
        stmt = stmt.where(UsageAnomaly.as_of <= end)
    with Session(state.db) as session:
        return [out.AnomalyOut(
            id=a.id, accountId=a.account_id, metric=a.metric, asOf=a.as_of,
            windowStart=a.window_start, windowEnd=a.window_end, expected=a.expected,
            observed=a.observed, change=a.change, z=a.z, direction=a.direction,
            evidence=dict(a.evidence), alertId=a.alert_id, notified=bool(a.notified),
            detectedAt=a.detected_at)
            for a in session.scalars(stmt.limit(limit).offset(offset))]
