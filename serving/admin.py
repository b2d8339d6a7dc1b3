"""The admin resource: webhook receivers and API keys.

A webhook's signing secret and a key are shown once, at creation; only a key's hash is stored.
A webhook URL whose host is not public (loopback, private, link-local, metadata, ...) is refused
unless allow-listed (serving.webhook_targets). Every change is audited.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import schemas
from serving.auth import create_key
from serving.convert import key_out, webhook_out
from serving.errors import NotFound, PayloadError
from serving.events import EVENT_TYPES
from serving.ops_store import ApiKey, Webhook, audit, deliveries_of, utcnow
from serving.state import ServiceState
from serving.webhook_targets import TargetRefused
from serving.webhook_targets import check as check_target


def add_webhook(state: ServiceState, req: schemas.WebhookRequest, actor: str) -> schemas.WebhookOut:
    bad = [t for t in req.eventTypes if t not in EVENT_TYPES]
    if bad:
        raise PayloadError(["body", "eventTypes"],
                           f"unknown event type(s) {bad}; known: {list(EVENT_TYPES)}")
    try:
        check_target(req.url, state.webhook_allow)
    except TargetRefused as exc:
        raise PayloadError(["body", "url"], f"webhook URL refused: {exc}") from None
    secret = req.secret or secrets.token_hex(32)
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        hook = Webhook(url=req.url, secret=secret, event_types=list(req.eventTypes),
                       active=True, created_at=utcnow())
        session.add(hook)
        session.flush()
        audit(session, actor, "webhook.created", str(hook.id),
              {"url": req.url, "eventTypes": req.eventTypes})
        return webhook_out(hook, secret)


def webhooks(state: ServiceState) -> list[schemas.WebhookOut]:
    with Session(state.db, expire_on_commit=False) as session:
        return [webhook_out(h) for h in session.scalars(select(Webhook).order_by(Webhook.id))]


def delete_webhook(state: ServiceState, hook_id: int, actor: str) -> None:
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        hook = session.get(Webhook, hook_id)
        if hook is None or not hook.active:
            raise NotFound(f"no active webhook {hook_id}")
        hook.active = False
        audit(session, actor, "webhook.disabled", str(hook_id), {})


def deliveries(state: ServiceState, hook_id: int, status: str | None) -> list[schemas.DeliveryOut]:
    with Session(state.db, expire_on_commit=False) as session:
        if session.get(Webhook, hook_id) is None:
            raise NotFound(f"no webhook {hook_id}")
        return [schemas.DeliveryOut(id=d.id, eventId=d.event_id, status=d.status,
                                attempts=d.attempts, lastStatus=d.last_status,
                                lastError=d.last_error, nextAttemptAt=d.next_attempt_at,
                                deliveredAt=d.delivered_at)
                for d in deliveries_of(session, hook_id, status)]


def add_key(state: ServiceState, req: schemas.KeyRequest, actor: str) -> schemas.KeyOut:
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        row, key = create_key(session, req.name, req.role, actor=actor)
        return key_out(row, key)


def list_keys(state: ServiceState) -> list[schemas.KeyOut]:
    with Session(state.db, expire_on_commit=False) as session:
        return [key_out(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def revoke_key(state: ServiceState, key_id: int, actor: str) -> None:
    with Session(state.db, expire_on_commit=False) as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            raise NotFound(f"no active key {key_id}")
        row.revoked_at = utcnow()
        audit(session, actor, "key.revoked", str(key_id), {"name": row.name})
    state.keys.forget()


