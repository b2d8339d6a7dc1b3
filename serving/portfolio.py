"""The daily job's portfolio pass: lifecycle changes and usage anomalies written with their
events and alerts in one transaction (the outbox rule, as for the scores).

- Lifecycle: every active account's stage as of the date (scoring.portfolio.lifecycle); an
  account whose stage differs from its last recorded one gets a journey row (date, from, to,
  cause) and, when it had a stage before, a `lifecycle.changed` event.
- Anomalies: the windows scoring.anomalies finds unusual raise an `anomaly:<metric>` alert
  through the same rules as the score's alerts (serving.alerts.apply_alerts, the anomaly
  family): one open alert per account and metric (dedupe), none within
  `portfolio.anomalies.cooldown_hours` of the last one's resolution (cool-down), and an open one
  whose window is back to normal is resolved. A new alert comes with an `anomaly.detected`
  event carrying the evidence; every detection is stored with its evidence and its alert.

With `idempotency` (the daily job passes the date) a re-run of a date replaces that date's rows
and adds no event twice. Computes nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from scoring.anomalies import DROP, describe, detect_anomalies
from scoring.pipeline import ScoredFrame
from scoring.portfolio.lifecycle import lifecycle_stages, stage_changes
from scoring.portfolio.settings import AnomalyConfig, PortfolioConfig
from serving.alerts import ANOMALY, AlertRules, Condition, apply_alerts
from serving.ops_store import Alert, add_event, utcnow
from serving.portfolio_store import JourneyEntry, UsageAnomaly

logger = logging.getLogger(__name__)

LIFECYCLE_CHANGED = "lifecycle.changed"
ANOMALY_DETECTED = "anomaly.detected"


@dataclass
class PortfolioOutcome:
    journey_entries: int = 0
    lifecycle_events: int = 0
    anomalies: int = 0
    anomaly_alerts: int = 0
    anomaly_alerts_resolved: int = 0
    anomaly_events: int = 0


def anomaly_rule(metric: str) -> str:
    return f"{ANOMALY}:{metric}"


def record_portfolio(engine: Engine, frame: ScoredFrame, source: duckdb.DuckDBPyConnection,
                     cfg: PortfolioConfig, *, idempotency: str | None = None,
                     now: datetime | None = None,
                     anomalies: pd.DataFrame | None = None) -> PortfolioOutcome:
    """Record the lifecycle stages of `frame`'s active accounts and the usage anomalies of the
    window ending the day before its as-of date (`anomalies`: already detected, else detected
    here from `source`)."""
    now = now or utcnow()
    active = frame.active()
    as_of = frame.as_of
    stages = lifecycle_stages(active, cfg.lifecycle)
    found = anomalies if anomalies is not None else \
        detect_anomalies(source, as_of, cfg.anomalies, active.account_ids)
    outcome = PortfolioOutcome()
    with Session(engine) as session, session.begin():
        record_lifecycle(session, stages, as_of, outcome, idempotency=idempotency, now=now)
        record_anomalies(session, found, as_of, cfg.anomalies, outcome,
                         idempotency=idempotency, now=now)
    logger.info("portfolio as of %s: %d journey entries, %d anomalies (%d new alerts)", as_of,
                outcome.journey_entries, outcome.anomalies, outcome.anomaly_alerts)
    return outcome


def last_stages(session: Session, before: date,
                account_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Each account's most recent recorded stage dated before `before`."""
    latest = (select(JourneyEntry.account_id, func.max(JourneyEntry.as_of).label("day"))
              .where(JourneyEntry.as_of < before).group_by(JourneyEntry.account_id).subquery())
    stmt = select(JourneyEntry.account_id, JourneyEntry.stage).join(
        latest, (JourneyEntry.account_id == latest.c.account_id)
        & (JourneyEntry.as_of == latest.c.day))
    got = {str(a): str(s) for a, s in session.execute(stmt)}
    if account_ids is not None:
        wanted = set(account_ids)
        got = {a: s for a, s in got.items() if a in wanted}
    return got


def record_lifecycle(session: Session, stages: pd.DataFrame, as_of: date,
                     outcome: PortfolioOutcome, *, idempotency: str | None, now: datetime
                     ) -> None:
    session.execute(delete(JourneyEntry).where(JourneyEntry.as_of == as_of))
    changes = stage_changes(stages, last_stages(session, as_of))
    names = dict(zip(stages["account_id"], stages["name"], strict=True))
    rows = [{"account_id": c.account_id, "as_of": as_of, "stage": c.to_stage,
             "from_stage": None if pd.isna(c.from_stage) else c.from_stage, "cause": c.cause,
             "recorded_at": now}
            for c in changes.itertuples(index=False)]
    if rows:
        session.execute(JourneyEntry.__table__.insert(), rows)
    outcome.journey_entries += len(rows)
    for c in changes.itertuples(index=False):
        if pd.isna(c.from_stage):
            continue  # an account's first stage is where its journey starts, not a change
        key = f"{idempotency}:{c.account_id}:{as_of}:{LIFECYCLE_CHANGED}" if idempotency \
            else None
        name = names.get(c.account_id)
        ev = add_event(session, LIFECYCLE_CHANGED, c.account_id, {
            "accountId": c.account_id, "name": None if pd.isna(name) else name,
            "asOf": str(as_of), "from": c.from_stage, "to": c.to_stage, "cause": c.cause},
            dedupe_key=key, now=now)
        outcome.lifecycle_events += ev is not None


def anomaly_payload(row: Mapping[str, Any], as_of: date, alert_id: int | None
                    ) -> dict[str, Any]:
    """What an `anomaly.detected` event and the API say about one detection."""
    return {"accountId": str(row["account_id"]), "metric": row["metric"], "asOf": str(as_of),
            "windowStart": str(row["window_start"]), "windowEnd": str(row["window_end"]),
            "expected": float(row["expected"]), "observed": float(row["observed"]),
            "change": float(row["change"]), "z": float(row["z"]),
            "direction": row["direction"], "alertId": alert_id,
            "message": describe(dict(row))}


def record_anomalies(session: Session, found: pd.DataFrame, as_of: date, cfg: AnomalyConfig,
                     outcome: PortfolioOutcome, *, idempotency: str | None, now: datetime
                     ) -> None:
    rules = AlertRules(cooldown=timedelta(hours=cfg.cooldown_hours))
    before = {(r.account_id, r.metric): r.notified for r in session.scalars(
        select(UsageAnomaly).where(UsageAnomaly.as_of == as_of))}
    session.execute(delete(UsageAnomaly).where(UsageAnomaly.as_of == as_of))
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in found.to_dict("records"):
        by_account.setdefault(str(row["account_id"]), []).append(row)
    with_open = set(session.scalars(select(Alert.account_id).distinct().where(
        Alert.status == "open", Alert.rule.like(f"{ANOMALY}:%"))))
    for account in sorted(set(by_account) | with_open):
        rows = {anomaly_rule(r["metric"]): r for r in by_account.get(account, [])}
        conditions = {rule: Condition(rule, cfg.severity_drop if r["direction"] == DROP
                                      else cfg.severity_spike, describe(r))
                      for rule, r in rows.items()}
        key = f"{idempotency}:{account}:{as_of}" if idempotency else None
        made, cleared = apply_alerts(session, account, conditions, rules, as_of=as_of, now=now,
                                     dedupe_key=key, of_family=ANOMALY)
        outcome.anomaly_alerts += len(made)
        outcome.anomaly_alerts_resolved += len(cleared)
        new = {a.rule: a for a in made}
        for rule, r in rows.items():
            alert = new.get(rule) or session.scalars(select(Alert).where(
                Alert.account_id == account, Alert.rule == rule, Alert.status == "open")
                .order_by(Alert.id.desc()).limit(1)).first()
            alert_id = alert.id if alert is not None else None
            notified = rule in new or before.get((account, r["metric"]), False)
            if rule in new:
                ev = add_event(session, ANOMALY_DETECTED, account,
                               anomaly_payload(r, as_of, alert_id), now=now,
                               dedupe_key=f"{key}:{ANOMALY_DETECTED}:{rule}" if key else None)
                outcome.anomaly_events += ev is not None
            session.add(UsageAnomaly(
                account_id=account, metric=r["metric"], as_of=as_of,
                window_start=pd.Timestamp(r["window_start"]).date(),
                window_end=pd.Timestamp(r["window_end"]).date(), expected=float(r["expected"]),
                observed=float(r["observed"]), change=float(r["change"]), z=float(r["z"]),
                direction=r["direction"],
                evidence={"dailyExpected": list(r["daily_expected"]),
                          "dailyObserved": list(r["daily_observed"]),
                          "commonFactor": float(r["common_factor"])},
                alert_id=alert_id, notified=bool(notified), detected_at=now))
            outcome.anomalies += 1
    session.flush()
