"""`Idempotency-Key` on POST: a client retrying after a timeout gets the first answer, not a
second change.

A POST carrying the header is claimed in the store before it runs: (who, key) is unique, so of
two identical requests arriving together one runs and the other is told 409 (in progress). The
finished response (status, type, body) is stored with the claim and replayed, with
`Idempotent-Replayed: true`, to any repeat with the same key and the same request within
`serving.idempotency_hours`; the same key with a different request is refused (422). A response
of 5xx is not kept: the claim is dropped so the retry runs. "Who" is a hash of the API key
presented, so one client's keys never collide with another's and no key is stored in clear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import (
    DateTime,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import HEADER
from serving.problems import field_error, problem
from serving.store import Base

IDEMPOTENCY_HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255


class IdempotentRequest(Base):
    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotent_owner_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[int | None] = mapped_column(Integer)
    """None while the first request runs."""
    media_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False,
                                                 index=True)


@dataclass(frozen=True)
class Claim:
    outcome: str
    """`run` (first time: go on), `replay`, `mismatch` (same key, other request) or `busy`."""
    row_id: int | None = None
    status: int | None = None
    media_type: str | None = None
    body: bytes | None = None


def claim(engine: Any, owner: str, key: str, fingerprint: str, ttl: timedelta,
          now: datetime | None = None) -> Claim:
    now = now or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < now - ttl))
        found = session.scalars(select(IdempotentRequest).where(
            IdempotentRequest.owner == owner, IdempotentRequest.key == key)).first()
        if found is None:
            row = IdempotentRequest(owner=owner, key=key, fingerprint=fingerprint,
                                    created_at=now)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                return Claim("busy")
            return Claim("run", row_id=row.id)
        if found.fingerprint != fingerprint:
            return Claim("mismatch")
        if found.status is None:
            return Claim("busy")
        return Claim("replay", found.id, found.status, found.media_type, found.body)


def settle(engine: Any, row_id: int, status: int, media_type: str | None, body: bytes) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(IdempotentRequest, row_id)
        if row is None:
            return
        if status >= 500:
            session.delete(row)  # not an answer worth replaying: let the retry run
        else:
            row.status, row.media_type, row.body = status, media_type, body


def release(engine: Any, row_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(IdempotentRequest).where(IdempotentRequest.id == row_id))


def _owner(headers: Headers) -> str:
    presented = headers.get(HEADER) or headers.get("authorization") or ""
    return hashlib.sha256(presented.encode()).hexdigest()


class IdempotencyMiddleware:
    """ASGI middleware applying the claims above to every POST that carries the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(IDEMPOTENCY_HEADER)
        state = getattr(scope["app"].state, "service", None)
        if key is None or state is None:
            await self.app(scope, receive, send)
            return
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isascii():
            await _refuse(scope, receive, send, 422, f"Idempotency-Key must be 1 to "
                          f"{MAX_KEY_LENGTH} ASCII characters")
            return
        try:
            body, messages = await _read(receive)
        except HTTPException as exc:  # the body limit or the text guard refused the body
            loc = getattr(exc, "loc", None)
            await _refuse(scope, receive, send, exc.status_code, str(exc.detail), loc=loc)
            return
        fingerprint = hashlib.sha256(b"\0".join([
            scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""),
            body])).hexdigest()
        ttl = timedelta(hours=state.settings.serving.idempotency_hours)
        got = await run_in_threadpool(claim, state.db, _owner(headers), key, fingerprint, ttl)
        if got.outcome == "mismatch":
            await _refuse(scope, receive, send, 422, "this Idempotency-Key was used with a "
                          "different request; use a new key for a new request")
            return
        if got.outcome == "busy":
            await _refuse(scope, receive, send, 409, "a request with this Idempotency-Key is "
                          "still running; retry once it has finished",
                          {"Retry-After": "1"})
            return
        if got.outcome == "replay":
            await _replay(send, got)
            return
        await self._run(scope, messages, send, state, got.row_id)

    async def _run(self, scope: Scope, messages: list[Message], send: Send, state: Any,
                   row_id: int | None) -> None:
        assert row_id is not None
        pending = list(messages)
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def replayed() -> Message:
            return pending.pop(0) if pending else {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replayed, capture)
        except BaseException:
            await run_in_threadpool(release, state.db, row_id)
            raise
        media = Headers(raw=start.get("headers", [])).get("content-type")
        await run_in_threadpool(settle, state.db, row_id, int(start.get("status", 500)), media,
                                b"".join(parts))


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


async def _replay(send: Send, got: Claim) -> None:
    headers = [(b"idempotent-replayed", b"true")]
    if got.media_type:
        headers.append((b"content-type", got.media_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": got.status, "headers": headers})
    await send({"type": "http.response.body", "body": got.body or b""})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                  headers: dict[str, str] | None = None,
                  loc: list[str | int] | None = None) -> None:
    errors = [field_error(loc or ["header", "Idempotency-Key"], detail)] \
        if status == 422 else None
    response = problem(Request(scope, receive), status, detail, errors=errors, headers=headers)
    await response(scope, receive, send)
