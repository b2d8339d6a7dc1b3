"""Webhook delivery: the worker that sends the outbox's events to their webhooks.

The delivery worker leases due deliveries, POSTs them signed with HMAC-SHA256
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
It decides no event (serving.events) and owns no target check (serving.webhook_targets).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from serving.ops_store import Delivery, Event, Webhook, claim_due, utcnow
from serving.webhook_targets import AllowList, TargetRefused, pin

logger = logging.getLogger(__name__)


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
