"""The account deep dive (`/accounts/{id}`) and its actions: resolve an alert, set or end a
manual score (writer), run a what-if (any role: it changes nothing).

Everything shown comes from the API's own functions: `scores.analyze` (the score, prediction,
factors, flags, missing data, peers, suggestions), `reports.history`, `alerting.close_alert`,
`changes.override`, and the what-if of `serving.explain`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from features.registry import FEATURES
from serving import alerting, changes, reports, schemas, scores
from serving.dashboard import charts
from serving.dashboard.web import Acting, Seen, State, Writing, back, render
from serving.errors import Conflict, NotFound
from serving.explain import what_if
from serving.payload import PayloadError
from serving.timeline import timeline
from serving.whatif import WhatIfError

router = APIRouter()

AccountId = Annotated[str, Path(min_length=1, max_length=200)]
ACTIONABLE: tuple[tuple[str, str], ...] = tuple(
    (f.name, f.description) for f in FEATURES if f.actionable)


def _page(request: Request, state: Any, v: Any, account_id: str, *, status: int = 200,
          notice: str | None = None, error: str | None = None,
          whatif: schemas.explanation.WhatIf | None = None,
          whatif_changes: dict[str, float] | None = None) -> HTMLResponse:
    analysis = scores.analyze(state, schemas.AnalyzeRequest(accountId=account_id, topK=5))
    health, explanation = analysis.healthScore, analysis.explanation
    account = state.account(account_id)  # cached: analyze scored it just now
    hist = reports.history(state, account_id, None, None)
    points = [(str(r.asOf), r.score) for r in hist["scores"]]
    # The manual score in effect, at the date the page is as of (it was set on a wall-clock
    # day, which need not be a scored date of the data).
    manual = [(str(account.as_of), health.override.score)] if health.override else []
    churn_model = None
    if explanation is not None:
        churns = [m for m in explanation.models if m.target == "churn"]
        churn_model = max(churns, key=lambda m: m.horizon) if churns else None
    values = account.features.iloc[0].to_dict()
    current = {name: values.get(name) for name, _ in ACTIONABLE}
    line = timeline(state, account_id, account.as_of,
                    state.settings.serving.dashboard_timeline_days)
    return render(request, "account.html", v, status=status, health=health,
                  prediction=analysis.prediction, explanation=explanation,
                  churn_model=churn_model, as_of=account.as_of, notice=notice, error=error,
                  history_chart=charts.history(points, manual), history=hist,
                  timeline=line, logins_chart=charts.logins(line.logins, line.start, line.end)
                  if line.logins else None,
                  actionable=ACTIONABLE, current={k: _plain(x) for k, x in current.items()},
                  whatif=whatif, whatif_changes=whatif_changes or {},
                  default_expiry=_default_expiry())


def _plain(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 3)


def _default_expiry() -> str:
    from datetime import timedelta

    return (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_page(request: Request, account_id: AccountId, state: State, v: Seen,
                 notice: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    return _page(request, state, v, account_id, notice=notice)


@router.post("/accounts/{account_id}/alerts/{alert_id}/resolve")
def resolve(request: Request, account_id: AccountId,
            alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)], state: State,
            act: Writing) -> Response:
    resolution = act.text("resolution") or "resolved from the dashboard"
    try:
        req = schemas.ResolveRequest(alertId=alert_id, resolution=resolution[:2000])
        alerting.close_alert(state, alert_id, req, act.viewer.who.name)
    except (Conflict, NotFound) as exc:
        return _page(request, state, act.viewer, account_id, status=409, error=str(exc))
    return back(f"/accounts/{account_id}", f"alert {alert_id} resolved")


@router.post("/accounts/{account_id}/override")
def set_override(request: Request, account_id: AccountId, state: State,
                 act: Writing) -> Response:
    try:
        expires = datetime.fromisoformat(act.text("expires")).replace(tzinfo=UTC)
        req = schemas.OverrideRequest(accountId=account_id, score=float(act.text("score")),
                                      reason=act.text("reason"), author=act.viewer.who.name,
                                      expiresAt=expires)
        changes.override(state, req, act.viewer.who.name)
    except ValueError as exc:  # ValidationError is a ValueError too
        return _page(request, state, act.viewer, account_id, status=422,
                     error=f"manual score not set: {_reason(exc)}")
    except PayloadError as exc:
        return _page(request, state, act.viewer, account_id, status=422,
                     error=f"manual score not set: {exc}")
    return back(f"/accounts/{account_id}", "manual score set")


@router.post("/accounts/{account_id}/override/end")
def end_override(request: Request, account_id: AccountId, state: State,
                 act: Writing) -> Response:
    try:
        changes.end_override(state, account_id, act.viewer.who.name)
    except NotFound as exc:
        return _page(request, state, act.viewer, account_id, status=409, error=str(exc))
    return back(f"/accounts/{account_id}", "manual score ended: the automatic score applies")


@router.post("/accounts/{account_id}/whatif", response_class=HTMLResponse)
def run_whatif(request: Request, account_id: AccountId, state: State,
               act: Acting) -> HTMLResponse:
    wanted: dict[str, float] = {}
    known = {name for name, _ in ACTIONABLE}
    try:
        for name in known:
            raw = act.text(f"f_{name}")
            if raw:
                wanted[name] = float(raw)
        if not wanted:
            raise WhatIfError("change at least one value")
        account = state.account(account_id)
        if not account.active:
            raise WhatIfError(account.probabilities_note or "the account is not active")
        result = what_if(account.features, wanted, account.connected, state.rules,
                         state.models)
    except ValueError as exc:  # WhatIfError, or a value that is not a number
        return _page(request, state, act.viewer, account_id, status=422,
                     error=f"what-if: {exc}", whatif_changes=wanted)
    return _page(request, state, act.viewer, account_id, whatif=result,
                 whatif_changes=wanted)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)
