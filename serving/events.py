"""Events: which changes of a score emit which events, writing them with the change, and
delivering them to webhooks.

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
- the delivery worker: leases due deliveries, POSTs them signed with HMAC-SHA256
  (`X-HealthScore-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`), retries with
  exponential back-off and moves a delivery to the dead-letter state after the last attempt.
  A delivery row is unique per (webhook, event) and is marked delivered in the same statement
  that ends its lease, so a restart resumes pending work and never re-sends a delivered one;
  the event id travels in `X-HealthScore-Event-Id` for receivers that dedupe themselves.
  Delivery is at least once: a worker killed between the receiver's answer and that statement
  sends the event again, with the same id, once its lease expires. Before each attempt the
  target is checked again (serving.webhook_targets: DNS may have changed since registration)
  and the request goes to the checked address; redirects are not followed (a 3xx is a failed
  attempt, retried like any other).
It computes no scores and decides no alert rule (serving.alerts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from serving.alerts import AlertRules, alert_conditions, apply_alerts
from serving.ops_store import (
    Delivery,
    Event,
    Webhook,
    add_event,
    claim_due,
    has_event,
    latest_score_before,
    utcnow,
    write_score_rows,
)
from serving.webhook_targets import AllowList, TargetRefused, pin

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
    from datetime import timedelta

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

def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver runs (tests use it too)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def event_body(event: Event) -> bytes:
    created = event.created_at if event.created_at.tzinfo else \
        event.created_at.replace(tzinfo=UTC)
    doc = {"id": event.uid, "type": event.type, "accountId": event.account_id,
           "createdAt": created.isoformat(), "data": event.payload}
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 6
    backoff: float = 2.0
    """Seconds before the 2nd attempt; doubling after each failure."""
    max_backoff: float = 600.0
    timeout: float = 5.0
    lease: float = 60.0
    batch: int = 20


def backoff_delay(attempts: int, policy: DeliveryPolicy) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(policy.max_backoff, policy.backoff * 2 ** max(0, attempts - 1))


class DeliveryWorker:
    """Delivers due webhook deliveries from the outbox in a background thread."""

    def __init__(self, engine: Engine, policy: DeliveryPolicy | None = None,
                 poll: float = 0.5, client: httpx.Client | None = None,
                 allow: AllowList | None = None) -> None:
        self.engine = engine
        self.policy = policy or DeliveryPolicy()
        self.poll = poll
        self.allow = allow or AllowList()
        """Targets reachable despite being non-public (serving.webhook_allow_hosts)."""
        self.owner = uuid.uuid4().hex
        self.client = client or httpx.Client(timeout=self.policy.timeout,
                                             follow_redirects=False)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhook-delivery",
                                            daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the delivery in flight, then stop (pending work stays in the outbox).

        The deliveries this worker claimed and did not attempt are handed back: a worker
        started next (the service restarted) delivers them at once instead of waiting for
        their leases to run out. A worker that dies without stopping leaves its leases to
        expire, as before."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # still in an attempt: its lease is its own to end
                self._thread = None
                self.client.close()
                return
            self._thread = None
        self.client.close()
        self.release()

    def release(self) -> int:
        """Hand back this worker's leases on deliveries still pending; how many."""
        try:
            with Session(self.engine) as session, session.begin():
                res = session.execute(update(Delivery).where(Delivery.lease_owner == self.owner,
                                                             Delivery.status == "pending")
                                      .values(lease_until=None, lease_owner=None))
                return int(res.rowcount)  # type: ignore[attr-defined]
        except Exception as exc:  # the store down: the leases expire by themselves
            logger.warning("could not hand back the webhook delivery leases: %s", exc)
            return 0

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                if failures:
                    logger.info("webhook delivery resumed after %d failed passes", failures)
                failures = 0
            except Exception as exc:  # keep the worker alive; the lease expires, work is retried
                failures += 1
                if failures == 1:
                    logger.exception("webhook delivery pass failed; retrying with back-off")
                else:
                    logger.debug("webhook delivery pass %d failed: %s", failures, exc)
                sent = 0
            if not sent:
                # The store down: wait longer each failed pass (at most 30 polls), not spin.
                self._wake.wait(self.poll * min(30, 2 ** min(failures, 5)))
                self._wake.clear()

    def run_once(self, now: datetime | None = None) -> int:
        """Claim and attempt the due deliveries once; returns how many were attempted."""
        now = now or utcnow()
        with Session(self.engine) as session, session.begin():
            ids = claim_due(session, self.owner, limit=self.policy.batch,
                            lease=timedelta(seconds=self.policy.lease), now=now)
        for did in ids:
            if self._stop.is_set():
                break
            self._attempt(did)
        return len(ids)

    def _attempt(self, delivery_id: int) -> None:
        with Session(self.engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None or delivery.status != "pending" \
                    or delivery.lease_owner != self.owner:
                return  # done, or its lease ran out and another worker claimed it
            event = session.get(Event, delivery.event_id)
            hook = session.get(Webhook, delivery.webhook_id)
            if event is None or hook is None:
                return
            body = event_body(event)
            url, secret, uid, type_ = hook.url, hook.secret, event.uid, event.type
            attempts = delivery.attempts + 1
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-HealthScore-Event": type_,
                   "X-HealthScore-Event-Id": uid, "X-HealthScore-Delivery": str(delivery_id),
                   "X-HealthScore-Timestamp": stamp,
                   "X-HealthScore-Signature": sign(secret, stamp, body)}
        status: int | None = None
        error: str | None = None
        try:
            target = pin(url, self.allow)
            resp = self.client.post(target.url, content=body,
                                    headers={**headers, "Host": target.host_header},
                                    extensions=target.extensions)
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}" + (" (redirects are not followed)"
                                            if resp.is_redirect else "")
        except TargetRefused as exc:
            error = f"target refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = utcnow()
        values: dict[str, Any] = {"attempts": attempts, "last_status": status,
                                  "last_error": error, "lease_until": None, "lease_owner": None}
        if error is None:
            values |= {"status": "delivered", "delivered_at": now}
        elif attempts >= self.policy.max_attempts:
            values |= {"status": "dead"}
            logger.warning("delivery %d of event %s to webhook %d is dead after %d attempts: "
                           "%s", delivery_id, uid, hook.id, attempts, error)
        else:
            delay = backoff_delay(attempts, self.policy)
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
            logger.info("delivery %d failed (%s); retry %d in %.1fs", delivery_id, error,
                        attempts + 1, delay)
        with Session(self.engine) as session, session.begin():
            session.execute(update(Delivery).where(Delivery.id == delivery_id,
                                                   Delivery.lease_owner == self.owner)
                            .values(**values))


def redeliver(engine: Engine, delivery_id: int) -> bool:
    """Put a dead-lettered delivery back in the queue (admin action)."""
    with Session(engine) as session, session.begin():
        res = session.execute(update(Delivery).where(Delivery.id == delivery_id,
                                                     Delivery.status == "dead")
                              .values(status="pending", attempts=0, next_attempt_at=utcnow(),
                                      lease_until=None, lease_owner=None))
        return bool(res.rowcount)  # type: ignore[attr-defined]


def pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(Delivery.id).where(Delivery.status == "pending")).all())


def events_for(session: Session, account_id: str | None = None, since_id: int = 0,
               limit: int = 100) -> list[Event]:
    stmt = select(Event).where(Event.id > since_id).order_by(Event.id).limit(limit)
    if account_id is not None:
        stmt = stmt.where(Event.account_id == account_id)
    return list(session.scalars(stmt))


def as_date(value: Any) -> date:
    return pd.Timestamp(value).date()
