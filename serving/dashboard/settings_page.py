"""Settings (`/settings`): the weights and thresholds of each rules profile, with a preview of
how many accounts would change band before a change is saved.

Saving goes through the admin API's own path (`changes.set_weights` / `changes.set_thresholds`):
a new rules version, audited with who changed what and why, adopted by every worker. A reader
sees the rules and their history, and no form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from scoring.health.profiles import FLAG_CODES, Profile
from serving import changes, schemas
from serving.dashboard.web import Seen, State, Writing, back, render
from serving.errors import NotFound
from serving.payload import PayloadError

router = APIRouter()


@dataclass(frozen=True)
class Threshold:
    """One editable threshold of a profile: its form name (the `ThresholdsRequest` path it
    sets, which is also how a 422 names it), what it is called on the page, its kind
    (number, whole, bool or severity) and its current value."""

    name: str
    label: str
    kind: str
    value: Any


def thresholds_of(profile: Profile) -> list[tuple[str, list[Threshold]]]:
    """Every threshold `ThresholdsRequest` accepts for `profile`, in sections: what the page
    shows, the preview carries to the save, and the form is read against."""
    sections = [
        ("Grades", [Threshold(f"grades.{i}.min", f"{g.grade} from", "number", g.min)
                    for i, g in enumerate(profile.grades)]),
        ("Bands", [t for i, b in enumerate(profile.bands)
                   for t in (Threshold(f"bands.{i}.min", f"{b.name} from", "whole", b.min),
                             Threshold(f"bands.{i}.max", f"{b.name} to", "whole", b.max))]),
        ("Status", [Threshold("status.healthy_min", "Healthy from", "number",
                              profile.status.healthy_min),
                    Threshold("status.at_risk_min", "At risk from (below: critical)", "number",
                              profile.status.at_risk_min)]),
    ]
    for code in FLAG_CODES:
        flag = getattr(profile.flags, code).model_dump()
        sections.append((f"Flag {code}", [
            Threshold(f"flags.{code}.{key}", key.replace("_", " "),
                      "bool" if isinstance(val, bool) else
                      "severity" if key == "severity" else "number", val)
            for key, val in flag.items()]))
    return sections


def _value(form: Any, t: Threshold) -> Any:
    """The form's value for `t` (its current value when the form leaves it out)."""
    if t.name not in form:
        return t.value
    if t.kind == "bool":
        return "true" in form.getlist(t.name)
    raw = str(form.get(t.name)).strip()
    if t.kind == "severity":
        return raw
    try:
        number = float(raw)
    except ValueError:
        raise PayloadError([t.name], f"{raw!r} is not a number") from None
    if not math.isfinite(number):
        raise PayloadError([t.name], f"must be a finite number, got {raw!r}")
    return number


def _thresholds_request(form: Any, profile: Profile, reason: str) -> schemas.ThresholdsRequest:
    """The `ThresholdsRequest` for what the form changes against `profile`: only the sections
    (and, of the flags, only the thresholds) that differ, so the audit names what changed."""
    fields = [t for _, ts in thresholds_of(profile) for t in ts]
    new = {t.name: _value(form, t) for t in fields}
    old = {t.name: t.value for t in fields}

    def section(prefix: str) -> dict[str, Any]:
        return {k: v for k, v in new.items() if k.startswith(prefix)}

    given: dict[str, Any] = {}
    if section("grades.") != {k: old[k] for k in section("grades.")}:
        given["grades"] = [{"grade": g.grade, "min": new[f"grades.{i}.min"]}
                           for i, g in enumerate(profile.grades)]
    if section("bands.") != {k: old[k] for k in section("bands.")}:
        given["bands"] = [{"name": b.name, "min": new[f"bands.{i}.min"],
                           "max": new[f"bands.{i}.max"]} for i, b in enumerate(profile.bands)]
    if section("status.") != {k: old[k] for k in section("status.")}:
        given["status"] = {"healthy_min": new["status.healthy_min"],
                           "at_risk_min": new["status.at_risk_min"]}
    flags: dict[str, dict[str, Any]] = {}
    for name, val in section("flags.").items():
        if val != old[name]:
            _, code, key = name.split(".", 2)
            flags.setdefault(code, {})[key] = val
    if flags:
        given["flags"] = flags
    if not given:
        raise PayloadError(["body"], "nothing changed: edit at least one threshold")
    return schemas.ThresholdsRequest.model_validate({"profile": profile.name, "reason": reason,
                                                     **given})


def _request(state: Any, form: Any, profile: str
             ) -> schemas.WeightsRequest | schemas.ThresholdsRequest:
    """The API request the form stands for (ValueError naming a bad field)."""
    reason = str(form.get("reason") or "")[:2000]
    if form.get("kind") == "weights":
        weights = {k[2:]: float(str(val)) for k, val in form.items()
                   if k.startswith("w_") and str(val).strip() != ""}
        return schemas.WeightsRequest(weights=weights, profile=profile, reason=reason)
    return _thresholds_request(form, _profile(state, profile), reason)


def _profile(state: Any, profile: str) -> Profile:
    try:
        return state.rules.profile(profile)
    except KeyError:
        names = [p.name for p in state.rules.all_profiles]
        raise NotFound(f"no rules profile named {profile!r}; known: {names}") from None


def _page(request: Request, state: Any, v: Any, profile: str, *, status: int = 200,
          **context: Any) -> HTMLResponse:
    chosen = _profile(state, profile)
    names = [p.name for p in state.rules.all_profiles]
    shown = context.get("proposed_profile") or chosen
    return render(request, "settings.html", v, status=status, profile=chosen, profiles=names,
                  thresholds=thresholds_of(shown),
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
        req = _request(state, act.form, profile)
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
        req = _request(state, act.form, profile)
        out = changes.set_weights(state, req, who) if isinstance(req, schemas.WeightsRequest) \
            else changes.set_thresholds(state, req, who)
    except (ValueError, PayloadError) as exc:
        return _page(request, state, act.viewer, profile, status=422, error=_reason(exc))
    return back(f"/settings?profile={profile}", f"saved: rules version {out.version}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)
