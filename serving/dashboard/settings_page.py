"""Settings (`/settings`): the weights and thresholds of each rules profile, with a preview of
how many accounts would change band before a change is saved.

Saving goes through the admin API's own path (`changes.set_weights` / `changes.set_thresholds`):
a new rules version, audited with who changed what and why, adopted by every worker. A reader
sees the rules and their history, and no form.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from serving import changes, schemas
from serving.dashboard.web import Seen, State, Writing, back, render
from serving.errors import NotFound
from serving.payload import PayloadError

router = APIRouter()


def _request(form: Any, profile: str) -> schemas.WeightsRequest | schemas.ThresholdsRequest:
    """The API request the form stands for (ValueError naming a bad field)."""
    reason = str(form.get("reason") or "")[:2000]
    if form.get("kind") == "weights":
        weights = {k[2:]: float(str(val)) for k, val in form.items()
                   if k.startswith("w_") and str(val).strip() != ""}
        return schemas.WeightsRequest(weights=weights, profile=profile, reason=reason)
    status = schemas.StatusIn(healthy_min=float(str(form.get("healthy_min"))),
                              at_risk_min=float(str(form.get("at_risk_min"))))
    return schemas.ThresholdsRequest(profile=profile, status=status, reason=reason)


def _page(request: Request, state: Any, v: Any, profile: str, *, status: int = 200,
          **context: Any) -> HTMLResponse:
    names = [p.name for p in state.rules.all_profiles]
    if profile not in names:
        raise NotFound(f"no rules profile named {profile!r}; known: {names}")
    chosen = state.rules.profile(profile)
    return render(request, "settings.html", v, status=status, profile=chosen, profiles=names,
                  versions=changes.config_versions(state)[:15],
                  rules_version=state.rules.config_version, **context)


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, state: State, v: Seen,
                  profile: Annotated[str, Query(max_length=100)] = "default",
                  notice: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    return _page(request, state, v, profile, notice=notice)


@router.post("/settings/preview", response_class=HTMLResponse)
def preview(request: Request, state: State, act: Writing) -> HTMLResponse:
    profile = act.text("profile") or "default"
    try:
        req = _request(act.form, profile)
        rules = changes.proposed_rules(state, req)
    except (ValueError, PayloadError) as exc:
        return _page(request, state, act.viewer, profile, status=422, error=_reason(exc))
    return _page(request, state, act.viewer, profile, preview=changes.band_changes(state, rules),
                 proposed=req, proposed_profile=rules.profile(profile))


@router.post("/settings/save")
def save(request: Request, state: State, act: Writing) -> Response:
    profile = act.text("profile") or "default"
    who = act.viewer.who.name
    try:
        req = _request(act.form, profile)
        out = changes.set_weights(state, req, who) if isinstance(req, schemas.WeightsRequest) \
            else changes.set_thresholds(state, req, who)
    except (ValueError, PayloadError) as exc:
        return _page(request, state, act.viewer, profile, status=422, error=_reason(exc))
    return back(f"/settings?profile={profile}", f"saved: rules version {out.version}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)
