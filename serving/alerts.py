"""Alert rules: which conditions of a scored account raise an alert, and keeping alerts tidy.

Owns the rules (`alert_conditions`, pure: a critical score, a sharp drop against the previous
score, each risk flag, a high churn probability) and applying them to the alerts table inside the
caller's transaction (`apply_alerts`): an open alert of the same rule is not raised again
(dedupe), a rule resolved less than the cool-down ago stays quiet, and an open rule alert whose
condition has cleared is resolved automatically. Manual alerts (`createAlert`) are only ever
resolved by hand. Writing the matching `Alert.created` / `Alert.resolved` events into the
outbox happens here too, in the same transaction. It computes no scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from serving.ops_store import Alert, add_event, aware, last_resolved, open_alerts, utcnow

logger = logging.getLogger(__name__)

MANUAL = "manual"
ANOMALY = "anomaly"
"""The family of usage-anomaly alerts (`anomaly:<metric>`, raised by serving.portfolio): a pass
of one family never resolves another's alerts."""
SCORE = "score"


def family(rule: str) -> str:
    """Which pass owns a rule's alerts: `anomaly` for `anomaly:*`, else `score`."""
    return ANOMALY if rule.startswith(ANOMALY + ":") else SCORE


@dataclass(frozen=True)
class AlertRules:
    drop_points: float = 10.0
    churn_probability: float = 0.5
    cooldown: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Condition:
    rule: str
    severity: str
    message: str


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def alert_conditions(row: Mapping[str, Any], previous_score: float | None,
                     churn_probability: float | None, rules: AlertRules) -> dict[str, Condition]:
    """The alert conditions one scored row meets, by rule name."""
    out: dict[str, Condition] = {}
    score = _num(row.get("score"))
    if row.get("status") == "critical":
        out["score_critical"] = Condition("score_critical", "high",
                                          f"health score {score:.0f} is critical")
    prev = _num(previous_score)
    if not math.isnan(score) and not math.isnan(prev) and score - prev <= -rules.drop_points:
        out["score_drop"] = Condition("score_drop", "medium",
                                      f"health score fell {prev - score:.0f} points "
                                      f"({prev:.0f} to {score:.0f})")
    for flag in row.get("flags") or []:
        rule = f"flag:{flag['code']}"
        out[rule] = Condition(rule, str(flag.get("severity", "medium")),
                              f"{flag.get('title', flag['code'])}: {flag.get('text', '')}".strip())
    p = _num(churn_probability)
    if not math.isnan(p) and p >= rules.churn_probability:
        out["churn_risk"] = Condition("churn_risk", "high",
                                      f"churn probability {p:.0%} within 90 days")
    return out


def _alert_payload(alert: Alert) -> dict[str, Any]:
    return {"alertId": alert.id, "accountId": alert.account_id, "rule": alert.rule,
            "severity": alert.severity, "message": alert.message, "status": alert.status,
            "resolution": alert.resolution}


def create_alert(session: Session, account_id: str, rule: str, severity: str, message: str,
                 created_by: str, *, as_of: date | None = None, now: datetime | None = None,
                 dedupe_key: str | None = None) -> Alert:
    alert = Alert(account_id=account_id, rule=rule, severity=severity, message=message,
                  status="open", created_at=now or utcnow(), created_by=created_by, as_of=as_of)
    session.add(alert)
    session.flush()
    add_event(session, "Alert.created", account_id, _alert_payload(alert), now=now,
              dedupe_key=f"{dedupe_key}:Alert.created:{rule}" if dedupe_key else None)
    return alert


def resolve_alert(session: Session, alert: Alert, by: str, resolution: str,
                  *, now: datetime | None = None, dedupe_key: str | None = None) -> Alert:
    alert.status = "resolved"
    alert.resolved_at = now or utcnow()
    alert.resolved_by = by
    alert.resolution = resolution
    session.flush()
    add_event(session, "Alert.resolved", alert.account_id, _alert_payload(alert), now=now,
              dedupe_key=f"{dedupe_key}:Alert.resolved:{alert.rule}" if dedupe_key else None)
    return alert


def apply_alerts(session: Session, account_id: str, conditions: Mapping[str, Condition],
                 rules: AlertRules, *, as_of: date | None = None, now: datetime | None = None,
                 dedupe_key: str | None = None, of_family: str = SCORE
                 ) -> tuple[list[Alert], list[Alert]]:
    """Raise new alerts and auto-resolve cleared ones of one family of rules (`of_family`: the
    score's rules, or usage anomalies); returns (created, resolved)."""
    now = now or utcnow()
    created: list[Alert] = []
    resolved: list[Alert] = []
    open_by_rule = {a.rule: a for a in open_alerts(session, account_id)
                    if a.rule != MANUAL and family(a.rule) == of_family}
    for rule, alert in open_by_rule.items():
        if rule not in conditions:
            resolved.append(resolve_alert(session, alert, "system", "auto: condition cleared",
                                          now=now, dedupe_key=dedupe_key))
    for rule, cond in conditions.items():
        if rule in open_by_rule:
            continue  # dedupe: one open alert per account and rule
        last = last_resolved(session, account_id, rule)
        if last is not None and last.resolved_at is not None \
                and aware(last.resolved_at) > now - rules.cooldown:  # type: ignore[operator]
            continue  # cool-down after the last one of this rule was resolved
        created.append(create_alert(session, account_id, rule, cond.severity, cond.message,
                                    "system", as_of=as_of, now=now, dedupe_key=dedupe_key))
    if created or resolved:
        logger.info("alerts for %s: %d raised, %d auto-resolved", account_id, len(created),
                    len(resolved))
    return created, resolved
