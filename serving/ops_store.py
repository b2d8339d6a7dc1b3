"""Operational tables of the service, on the score store's `Base`: overrides, alerts, config
versions, the events outbox, webhooks with their deliveries, API keys and the audit log.

Owns the SQLAlchemy 2 models of these tables (created by migration 0002) and the small
transactional operations on them that take an open `Session`, so a caller can put a score, its
events, their deliveries and its alerts in ONE transaction (the outbox rule: an event exists
exactly when the change it describes was committed). It decides nothing: which events or alerts
a change raises is `serving.events` / `serving.alerts`; scoring is `scoring.health`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from serving.store import SCORE_FIELDS, Base, HealthScoreRecord, _records

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands timezone-aware columns back naive: they are UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ConfigVersion(Base):
    """A rules profile content the service scored with; the newest row is the active one."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    """The rules YAML's content as JSON (what `parse_rules` reads back)."""
    change: Mapped[str] = mapped_column(String(32), nullable=False)
    """initial, weights or thresholds."""
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Override(Base):
    """A manual score for an account until `expires_at`; the automatic score stays beside it."""

    __tablename__ = "score_overrides"
    __table_args__ = (Index("ix_score_overrides_account", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    automatic_score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by_key: Mapped[str | None] = mapped_column(String(200))


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_account_rule", "account_id", "rule"),
                      Index("ix_alerts_status", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), nullable=False)
    rule: Mapped[str] = mapped_column(String(100), nullable=False)
    """The raising rule (`score_critical`, `flag:usage_drop`, ...) or `manual`."""
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(Text)
    as_of: Mapped[date | None] = mapped_column(Date)


class Event(Base):
    """The outbox: written in the transaction of the change it describes."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_account_type", "account_id", "type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    account_id: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    dedupe_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    """Set by idempotent writers (the daily job: type, account and date): a re-run adds none."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    secret: Mapped[str] = mapped_column(String(200), nullable=False)
    """HMAC key: kept in clear because signing needs it; never returned after creation."""
    event_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    """Subscribed types; empty means all."""
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Delivery(Base):
    """One event for one subscriber: the unit of retry and of dedupe."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "event_id", name="uq_delivery_once"),
                      Index("ix_deliveries_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"),
                                            nullable=False)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"),
                                          nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    """pending, delivered or dead (dead-letter: retries exhausted)."""
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    """The first characters of the key, to recognise it in a listing (not enough to use it)."""
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


# --- operations (all take an open Session; the caller owns the transaction) -------------------

def audit(session: Session, actor: str, action: str, target: str | None,
          detail: dict[str, Any]) -> None:
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target,
                           detail=_jsonable(detail)))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def add_event(session: Session, type_: str, account_id: str | None, payload: dict[str, Any],
              *, dedupe_key: str | None = None, now: datetime | None = None) -> Event | None:
    """Write one event and a pending delivery for each active subscriber of its type.

    With a `dedupe_key` already in the outbox nothing is written and None is returned (the
    daily job re-run for a date). No SAVEPOINT: pysqlite would commit it on its own, outside
    the caller's transaction; two writers racing on one key make the later transaction fail
    on the unique constraint, and it can be re-run.
    """
    now = now or utcnow()
    if dedupe_key is not None and session.scalar(
            select(Event.id).where(Event.dedupe_key == dedupe_key)) is not None:
        return None
    event = Event(uid=uuid.uuid4().hex, type=type_, account_id=account_id,
                  payload=_jsonable(payload), dedupe_key=dedupe_key, created_at=now)
    session.add(event)
    session.flush()
    for hook in session.scalars(select(Webhook).where(Webhook.active.is_(True))):
        if hook.event_types and type_ not in hook.event_types:
            continue
        session.add(Delivery(webhook_id=hook.id, event_id=event.id, status="pending",
                             attempts=0, next_attempt_at=now))
    return event


def has_event(session: Session, type_: str, account_id: str) -> bool:
    return session.scalar(select(Event.id).where(Event.type == type_,
                                                 Event.account_id == account_id)
                          .limit(1)) is not None


def write_score_rows(session: Session, scores: pd.DataFrame, scored_at: datetime | None = None
                     ) -> None:
    """Replace the (account_id, as_of) score rows of `scores` inside the caller's transaction."""
    records = _records(scores, scored_at or utcnow())
    for rec in records:
        session.execute(delete(HealthScoreRecord).where(
            HealthScoreRecord.account_id == rec["account_id"],
            HealthScoreRecord.as_of == rec["as_of"]))
    if records:
        session.execute(HealthScoreRecord.__table__.insert(), records)


def latest_score_before(session: Session, account_id: str, as_of: date,
                        *, inclusive: bool = False) -> dict[str, Any] | None:
    """The account's most recent stored score dated before (or at) `as_of`."""
    when = HealthScoreRecord.as_of <= as_of if inclusive else HealthScoreRecord.as_of < as_of
    row = session.execute(
        select(*[getattr(HealthScoreRecord, c) for c in SCORE_FIELDS])
        .where(HealthScoreRecord.account_id == account_id, when)
        .order_by(HealthScoreRecord.as_of.desc()).limit(1)
    ).first()
    if row is None:
        return None
    out = dict(zip(SCORE_FIELDS, row, strict=True))
    for col in ("flags", "missing"):
        if isinstance(out[col], str):
            out[col] = json.loads(out[col])
    return out


def active_config(session: Session) -> ConfigVersion | None:
    return session.scalars(select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1)
                           ).first()


def add_config(session: Session, version: str, content: str, change: str, author: str,
               reason: str) -> ConfigVersion:
    row = ConfigVersion(version=version, content=content, change=change, author=author,
                        reason=reason, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def active_override(session: Session, account_id: str, now: datetime | None = None
                    ) -> Override | None:
    now = now or utcnow()
    rows = session.scalars(select(Override).where(Override.account_id == account_id)
                           .order_by(Override.id.desc()).limit(5)).all()
    for row in rows:
        if aware(row.expires_at) > now:  # type: ignore[operator]
            return row
    return None


def active_overrides(session: Session, account_ids: Iterable[str] | None = None,
                     now: datetime | None = None) -> dict[str, Override]:
    now = now or utcnow()
    stmt = select(Override).where(Override.expires_at > now).order_by(Override.id)
    if account_ids is not None:
        stmt = stmt.where(Override.account_id.in_(list(account_ids)))
    return {o.account_id: o for o in session.scalars(stmt)}


def open_alerts(session: Session, account_id: str | None = None) -> list[Alert]:
    stmt = select(Alert).where(Alert.status == "open").order_by(Alert.id)
    if account_id is not None:
        stmt = stmt.where(Alert.account_id == account_id)
    return list(session.scalars(stmt))


def last_resolved(session: Session, account_id: str, rule: str) -> Alert | None:
    return session.scalars(select(Alert).where(Alert.account_id == account_id,
                                               Alert.rule == rule, Alert.status == "resolved")
                           .order_by(Alert.id.desc()).limit(1)).first()


def list_alerts(session: Session, *, account_id: str | None = None, status: str | None = None,
                limit: int = 100, offset: int = 0) -> list[Alert]:
    stmt = select(Alert).order_by(Alert.id.desc()).limit(limit).offset(offset)
    if account_id is not None:
        stmt = stmt.where(Alert.account_id == account_id)
    if status is not None:
        stmt = stmt.where(Alert.status == status)
    return list(session.scalars(stmt))


# --- deliveries ---------------------------------------------------------------------------------

def claim_due(session: Session, owner: str, *, limit: int, lease: timedelta,
              now: datetime | None = None) -> list[int]:
    """Lease up to `limit` due pending deliveries to `owner` (one atomic UPDATE each, so two
    workers never send the same delivery at once); returns the claimed ids."""
    now = now or utcnow()
    ids = list(session.scalars(
        select(Delivery.id).where(Delivery.status == "pending", Delivery.next_attempt_at <= now,
                                  or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
        .order_by(Delivery.id).limit(limit)))
    claimed = []
    for did in ids:
        res = session.execute(
            update(Delivery).where(Delivery.id == did, Delivery.status == "pending",
                                   or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
            .values(lease_until=now + lease, lease_owner=owner))
        if res.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(did)
    return claimed


def deliveries_of(session: Session, webhook_id: int, status: str | None = None,
                  limit: int = 100) -> Sequence[Delivery]:
    stmt = select(Delivery).where(Delivery.webhook_id == webhook_id).order_by(Delivery.id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    return session.scalars(stmt.limit(limit)).all()
