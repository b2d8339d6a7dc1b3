"""The changes resource (writer role): manual score overrides and new rules versions.

A rules change (weights, thresholds) is a new stored version: audited with who changed what and
why, adopted by every worker at its next request (`ServiceState.tick`), and the portfolio is
rescored with it at once in this worker.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scoring.health.profiles import Rules, RulesError, parse_rules
from scoring.pipeline import score_accounts
from serving import schemas
from serving.convert import config_out, number
from serving.errors import NotFound, PayloadError
from serving.ops_store import (
    ConfigVersion,
    Override,
    active_override,
    add_config,
    add_event,
    audit,
    aware,
    utcnow,
)
from serving.scores import health_score, persist
from serving.state import ServiceState


def override(state: ServiceState, req: schemas.OverrideRequest, actor: str
             ) -> schemas.HealthScore:
    """A manual score with a reason, an author and an expiry (audited; emits `updated`)."""
    expires = aware(req.expiresAt)
    if expires <= utcnow():  # type: ignore[operator]
        raise PayloadError(["body", "expiresAt"], "must be in the future")
    account = state.account(req.accountId)
    persist(state, account, force=False)
    automatic = number(account.score["score"])
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        session.add(Override(account_id=req.accountId, score=req.score,
                             automatic_score=automatic, reason=req.reason, author=req.author,
                             expires_at=expires, created_at=utcnow(), created_by_key=actor))
        detail = {"score": req.score, "automaticScore": automatic, "reason": req.reason,
                  "author": req.author,
                  "expiresAt": expires.isoformat()}  # type: ignore[union-attr]
        audit(session, actor, "score.override", req.accountId, detail)
        add_event(session, "updated", req.accountId, {"accountId": req.accountId, **detail})
    state.worker.wake()
    return health_score(state, account)


def end_override(state: ServiceState, account_id: str, actor: str) -> schemas.HealthScore:
    """End the account's manual score now (audited; emits `updated`): the automatic score
    applies again. NotFound when no override is in effect."""
    state.known(account_id)
    now = utcnow()
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        row = active_override(session, account_id, now)
        if row is None:
            raise NotFound(f"account {account_id!r} has no manual score in effect")
        row.expires_at = now
        detail = {"overrideId": row.id, "score": row.score, "endedAt": now.isoformat()}
        audit(session, actor, "score.override_ended", account_id, detail)
        add_event(session, "updated", account_id, {"accountId": account_id, **detail})
    state.worker.wake()
    return health_score(state, state.account(account_id))


def _weights_change(req: schemas.WeightsRequest) -> Callable[[dict[str, Any]], None]:
    def change(profile: dict[str, Any]) -> None:
        weights = dict(profile.get("weights") or {})
        weights.update(req.weights)
        profile["weights"] = weights

    return change


def _thresholds_given(req: schemas.ThresholdsRequest) -> dict[str, Any]:
    given = req.model_dump(exclude_none=True, exclude={"profile", "reason"})
    if not given:
        raise PayloadError(["body"], "give at least one of grades, bands, status, flags")
    return given


def _thresholds_change(given: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(profile: dict[str, Any]) -> None:
        for key in ("grades", "bands", "status"):
            if key in given:
                profile[key] = given[key]
        for code, values in given.get("flags", {}).items():
            flags = dict(profile.get("flags") or {})
            flags[code] = {**dict(flags.get(code) or {}), **values}
            profile["flags"] = flags

    return change


def set_weights(state: ServiceState, req: schemas.WeightsRequest, actor: str
                ) -> schemas.ConfigVersionOut:
    return _new_version(state, req.profile, _weights_change(req), "weights", actor, req.reason,
                        {"weights": req.weights})


def set_thresholds(state: ServiceState, req: schemas.ThresholdsRequest, actor: str
                   ) -> schemas.ConfigVersionOut:
    given = _thresholds_given(req)
    return _new_version(state, req.profile, _thresholds_change(given), "thresholds", actor,
                        req.reason, given)


def proposed_rules(state: ServiceState, req: schemas.WeightsRequest | schemas.ThresholdsRequest
                   ) -> Rules:
    """The rules version `setWeights` or `setThresholds` would store for `req`, not stored:
    what a preview scores the portfolio with."""
    change = _weights_change(req) if isinstance(req, schemas.WeightsRequest) \
        else _thresholds_change(_thresholds_given(req))
    with state.lock:
        return _changed_rules(state.rules, req.profile, change)


def _changed_rules(current: Rules, profile_name: str,
                   change: Callable[[dict[str, Any]], None]) -> Rules:
    data = json.loads(current.content)
    if profile_name == "default":
        change(data["default"])
    else:
        target = [p for p in data.get("profiles") or [] if p.get("name") == profile_name]
        if not target:
            raise NotFound(f"no rules profile named {profile_name!r}")
        change(target[0])
    try:
        rules = parse_rules(data, Path("request"))
    except RulesError as exc:
        raise PayloadError(["body"], str(exc).replace("request: ", "")) from None
    return rules.with_trend(current.trend_days, current.trend_dead_band)


def config_versions(state: ServiceState) -> list[schemas.ConfigVersionOut]:
    with Session(state.db, expire_on_commit=False) as session:
        rows = session.scalars(select(ConfigVersion).order_by(ConfigVersion.id.desc())).all()
        top = rows[0].id if rows else None
        return [config_out(r, r.id == top) for r in rows]


def _new_version(state: ServiceState, profile_name: str,
                 change: Callable[[dict[str, Any]], None], kind: str, actor: str, reason: str,
                 detail: dict[str, Any]) -> schemas.ConfigVersionOut:
    with state.lock:
        rules = _changed_rules(state.rules, profile_name, change)
        with Session(state.db, expire_on_commit=False) as session, session.begin():
            row = add_config(session, rules.config_version, rules.content, kind, actor, reason)
            audit(session, actor, f"config.{kind}", profile_name,
                  {**detail, "version": rules.config_version})
            out = config_out(row, True)
        state.adopt(rules, row.id)
    return out


def band_changes(state: ServiceState, rules: Rules) -> dict[str, Any]:
    """How many of today's accounts would change band under `rules`: the portfolio scored again
    by the one pipeline with them (nothing stored), compared with the portfolio as it is."""
    portfolio = state.portfolio
    if portfolio is None or not state.snapshot.available:
        raise NotFound("no scored portfolio to preview against: run `healthscore ingest`")
    scorer = dataclasses.replace(state.scorer, rules=rules)
    again = score_accounts(state.snapshot.connection(), portfolio.account_ids, portfolio.as_of,
                           scorer, trend=False)
    before = portfolio.scores["band"].astype("string").fillna("-").to_numpy()
    after = again.scores["band"].astype("string").fillna("-").to_numpy()
    moved = Counter((str(a), str(b)) for a, b in zip(before, after, strict=True) if a != b)
    return {"accounts": len(before), "changed": int(sum(moved.values())),
            "moves": sorted(((a, b, n) for (a, b), n in moved.items()), key=lambda m: -m[2]),
            "version": rules.config_version}
