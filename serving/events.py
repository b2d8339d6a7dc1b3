"""Events: which changes of a score emit which events, and writing them with the change (the
outbox).

Owns
- the event rules (`score_events`, pure): `calculated` always; `Grade.changed`,
  `Status.changed`, `Score.declined` / `Score.improved` (a move of at least `change_points`),
  `Risk.increased` (a risk flag raised that the previous score did not have, or the churn
  probability up by `risk_points`), `Threshold.breached` (the score fell through a status cut
  of its profile) and `health.declined` (the first time an account drops below 30);
  `lifecycle.changed` and `anomaly.detected` are written by the daily job's portfolio pass
  (serving.portfolio) through the same outbox;
- `record_scores`: scores, their events, the webhook deliveries and the alerts in ONE
  transaction (the outbox); the daily job calls it with `idempotency="<as_of>"` so a re-run of a
  date adds no event twice;
Delivering them to webhooks is serving.delivery's.
It computes no scores and decides no alert rule (serving.alerts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from serving.alerts import AlertRules, alert_conditions, apply_alerts
from serving.ops_store import (
    Event,
    add_event,
    has_event,
    latest_score_before,
    utcnow,
    write_score_rows,
)

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "calculated", "updated", "Alert.created", "Alert.resolved", "Grade.changed",
    "Status.changed", "Risk.increased", "Score.declined", "Score.improved",
    "Threshold.breached", "health.declined", "lifecycle.changed", "anomaly.detected",
)
DECLINE_FLOOR = 30.0
"""`health.declined` fires the first time an account's score drops below this."""


@dataclass(frozen=True)
class EventRules:
    change_points: float = 5.0
    risk_points: float = 10.0
    """Churn probability rise, in percentage points, that counts as Risk.increased."""


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def score_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an event says about a score: small, JSON-ready."""
    score = _num(row.get("score"))
    return {
        "accountId": str(row["account_id"]),
        "asOf": str(pd.Timestamp(row["as_of"]).date()),
        "score": None if math.isnan(score) else round(score, 2),
        "grade": row.get("grade"), "band": row.get("band"), "status": row.get("status"),
        "configVersion": row.get("config_version"),
    }


def score_events(new: Mapping[str, Any], old: Mapping[str, Any] | None, rules: EventRules, *,
                 status_cuts: Sequence[float] = (), first_below_floor: bool = False,
                 churn: float | None = None, old_churn: float | None = None,
                 ) -> list[tuple[str, dict[str, Any]]]:
    """The (type, payload) events one new score emits against the previous one (pure)."""
    base = score_payload(new)
    out: list[tuple[str, dict[str, Any]]] = [("calculated", base)]
    score = _num(new.get("score"))
    if old is None:
        prev = math.nan
    else:
        prev = _num(old.get("score"))
        ctx = {**base, "previousScore": None if math.isnan(prev) else round(prev, 2)}
        if old.get("grade") != new.get("grade") and old.get("grade") and new.get("grade"):
            out.append(("Grade.changed", {**ctx, "from": old.get("grade"),
                                          "to": new.get("grade")}))
        if old.get("status") != new.get("status") and old.get("status") and new.get("status"):
            out.append(("Status.changed", {**ctx, "from": old.get("status"),
                                           "to": new.get("status")}))
        if not math.isnan(score) and not math.isnan(prev):
            delta = score - prev
            if delta <= -rules.change_points:
                out.append(("Score.declined", {**ctx, "delta": round(delta, 2)}))
            elif delta >= rules.change_points:
                out.append(("Score.improved", {**ctx, "delta": round(delta, 2)}))
            crossed = [c for c in status_cuts if prev >= c > score]
            if crossed:
                out.append(("Threshold.breached", {**ctx, "threshold": max(crossed)}))
        before = {f["code"] for f in old.get("flags") or []}
        raised = sorted({f["code"] for f in new.get("flags") or []} - before)
        rise = _num(churn) - _num(old_churn)
        if raised or (not math.isnan(rise) and rise * 100 >= rules.risk_points):
            out.append(("Risk.increased", {**ctx, "newFlags": raised,
                                           "churnRisk": None if churn is None else churn}))
    if first_below_floor and not math.isnan(score) and score < DECLINE_FLOOR \
            and (math.isnan(prev) or prev >= DECLINE_FLOOR or old is None):
        out.append(("health.declined", {**base, "floor": DECLINE_FLOOR}))
    return out


@dataclass
class RecordOutcome:
    events: list[Event] = field(default_factory=list)
    alerts_created: int = 0
    alerts_resolved: int = 0


def record_scores(engine: Engine, scores: pd.DataFrame, *, event_rules: EventRules,
                  alert_rules: AlertRules, status_cuts: Mapping[str, Sequence[float]],
                  churn: Mapping[str, float] | None = None, idempotency: str | None = None,
                  now: datetime | None = None,
                  also: Callable[[Session], Any] | None = None) -> RecordOutcome:
    """Write score rows with their events, deliveries and alerts in one transaction.

    `status_cuts` maps a profile name to its status cuts; `churn` an account to its 90-day churn
    probability (absent: no model). With `idempotency` (the daily job passes the as-of date) each
    event gets a dedupe key, so running the same date twice adds no event the second time.
    `also` writes more rows of the same change in the same transaction (the daily job's
    probabilities). Any failure rolls everything back.
    """
    now = now or utcnow()
    churn = churn or {}
    outcome = RecordOutcome()
    rows = scores.to_dict("records")
    with Session(engine) as session, session.begin():
        for row in rows:
            account = str(row["account_id"])
            as_of = pd.Timestamp(row["as_of"]).date()
            old = latest_score_before(session, account, as_of)
            first = not has_event(session, "health.declined", account)
            p = churn.get(account)
            events = score_events(row, old, event_rules,
                                  status_cuts=status_cuts.get(str(row.get("profile")), ()),
                                  first_below_floor=first, churn=p)
            key = f"{idempotency}:{account}:{as_of}" if idempotency else None
            for type_, payload in events:
                ev = add_event(session, type_, account, payload, now=now,
                               dedupe_key=f"{key}:{type_}" if key else None)
                if ev is not None:
                    outcome.events.append(ev)
            conditions = alert_conditions(row, None if old is None else old.get("score"), p,
                                          alert_rules)
            made, cleared = apply_alerts(session, account, conditions, alert_rules,
                                         as_of=as_of, now=now, dedupe_key=key)
            outcome.alerts_created += len(made)
            outcome.alerts_resolved += len(cleared)
        write_score_rows(session, scores, now)
        if also is not None:
            also(session)
    return outcome


def record_daily(engine: Engine, scores: pd.DataFrame, rules: Any, serving_cfg: Any, *,
                 churn: Mapping[str, float] | None = None,
                 also: Callable[[Session], Any] | None = None) -> RecordOutcome:
    """What the daily job (`healthscore score`) calls to store a date's scores through the
    same outbox as the service: same events and alerts, idempotent for the date (a re-run adds
    no event twice). `rules` is the `Rules` that scored the frame; `serving_cfg` the
    `ServingConfig` holding the event and alert thresholds."""

    dates = sorted({str(pd.Timestamp(d).date()) for d in scores["as_of"]})
    return record_scores(
        engine, scores,
        event_rules=EventRules(change_points=serving_cfg.score_change_points,
                               risk_points=serving_cfg.risk_increase_points),
        alert_rules=AlertRules(drop_points=serving_cfg.alert_drop_points,
                               churn_probability=serving_cfg.alert_churn_probability,
                               cooldown=timedelta(hours=serving_cfg.alert_cooldown_hours)),
        status_cuts={p.name: (p.status.healthy_min, p.status.at_risk_min)
                     for p in rules.all_profiles},
        churn=churn, idempotency="daily:" + ",".join(dates), also=also)


# --- delivery -----------------------------------------------------------------------------------

def events_for(session: Session, account_id: str | None = None, since_id: int = 0,
               limit: int = 100) -> list[Event]:
    stmt = select(Event).where(Event.id > since_id).order_by(Event.id).limit(limit)
    if account_id is not None:
        stmt = stmt.where(Event.account_id == account_id)
    return list(session.scalars(stmt))


def as_date(value: Any) -> date:
    return pd.Timestamp(value).date()
