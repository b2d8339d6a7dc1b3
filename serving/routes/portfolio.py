"""The portfolio routes (reader): value tiers and classes, RFM, lifecycle stages, an account's
journey, usage anomalies."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from serving import portfolio_views as views
from serving.routes.deps import ERRORS, Reader, State
from serving.schemas import portfolio as out

router = APIRouter(tags=["portfolio"])

Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Tier = Literal["Strategic", "High Value", "Standard"]
SegmentClass = Literal["Strategic", "High Value", "At Risk", "Dormant", "Growing", "Standard"]
Stage = Literal["Onboarding", "Growth", "Mature", "At-Risk", "Renewal"]


@router.get("/portfolio/value", response_model=out.ValuePage, responses=ERRORS)
def value(state: State, _who: Reader, asOf: date | None = None, tier: Tier | None = None,
          segment: SegmentClass | None = None, limit: Limit = 100, offset: Offset = 0
          ) -> out.ValuePage:
    """Value score, tier and health-segment classes of the active accounts, highest value
    first, each with its reason; `segment` keeps the accounts qualifying for that class."""
    return views.value(state, asOf, tier, segment, limit, offset)


@router.get("/portfolio/rfm", response_model=out.RfmPage, responses=ERRORS)
def rfm(state: State, _who: Reader, asOf: date | None = None,
        segment: Annotated[str | None, Query(max_length=64)] = None, limit: Limit = 100,
        offset: Offset = 0) -> out.RfmPage:
    """Recency, frequency and monetary scores (1-5 on the portfolio's quintiles) and the named
    RFM segment of the active accounts."""
    return views.rfm(state, asOf, segment, limit, offset)


@router.get("/portfolio/lifecycle", response_model=out.StagePage, responses=ERRORS)
def lifecycle(state: State, _who: Reader, asOf: date | None = None, stage: Stage | None = None,
              limit: Limit = 100, offset: Offset = 0) -> out.StagePage:
    """The lifecycle stage of every active account, with its cause."""
    return views.stages(state, asOf, stage, limit, offset)


@router.get("/accounts/{account_id}/lifecycle", response_model=out.Journey, responses=ERRORS)
def journey(account_id: Annotated[str, Path(min_length=1, max_length=200)], state: State,
            _who: Reader, asOf: date | None = None) -> out.Journey:
    """The account's stage now and its journey: every recorded stage change with its date and
    cause."""
    return views.journey(state, account_id, asOf)


@router.get("/anomalies", response_model=list[out.AnomalyOut], responses=ERRORS)
def anomalies(state: State, _who: Reader,
              accountId: Annotated[str | None, Query(max_length=200)] = None,
              metric: Annotated[str | None, Query(max_length=64)] = None,
              start: date | None = None, end: date | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Offset = 0
              ) -> list[out.AnomalyOut]:
    """Usage anomalies the daily job detected, newest first, with their evidence (expected vs
    observed over the window, the count test's z, per-day values) and their alert."""
    return views.anomalies(state, accountId, metric, start, end, limit, offset)
