"""The alert routes: raise and resolve (writer), list (reader)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from serving import alerting, schemas
from serving.routes.deps import ERRORS, Reader, State, Writer

router = APIRouter(tags=["alerts"])


@router.post("/createAlert", response_model=schemas.AlertOut, responses=ERRORS)
def create_alert(req: schemas.AlertRequest, state: State, who: Writer) -> schemas.AlertOut:
    return alerting.raise_alert(state, req, who.name)


@router.post("/resolveAlert", response_model=schemas.AlertOut,
          responses={**ERRORS, 409: {"model": schemas.Problem}})
def resolve_alert(req: schemas.ResolveRequest, state: State, who: Writer) -> schemas.AlertOut:
    return alerting.close_alert(state, req.alertId, req, who.name)


@router.get("/alerts", response_model=list[schemas.AlertOut], responses=ERRORS)
def alerts(state: State, _who: Reader,
           accountId: Annotated[str | None, Query(max_length=200)] = None,
           status: Literal["open", "resolved"] | None = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[schemas.AlertOut]:
    return alerting.alerts(state, accountId, status, limit, offset)
