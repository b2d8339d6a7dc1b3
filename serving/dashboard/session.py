"""Who is looking at the dashboard: sign-in with an API key, a signed session cookie, CSRF.

The cookie carries the key's SHA-256 hash (never the key) and a random CSRF token, signed and
timed with itsdangerous; it is HttpOnly, SameSite=Strict and, behind TLS, Secure. Each request
resolves the hash through the same `KeyChecker` the API uses, so a revoked key stops working in
the dashboard as in the API. Every POST carries the session's CSRF token in a form field (or the
`X-CSRF-Token` header) and is refused (403) without it; the sign-in form, which has no session
yet, carries a token of its own signed cookie. Roles are the API's: reader sees, writer edits.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from serving.auth import AccessDenied, Principal, Role, hash_key
from serving.state import ServiceState

COOKIE = "hs_session"
SIGNIN_COOKIE = "hs_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SIGNIN_SECONDS = 900
"""How long a sign-in form stays valid."""


class SignInNeeded(Exception):
    """No valid session: the sign-in page is the answer, never data."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class Forbidden(Exception):
    """A signed-in user whose role may not do this, or a POST without the session's token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Viewer:
    who: Principal
    csrf: str

    def can(self, role: Role) -> bool:
        return self.who.allows(role)


_SECRETS: dict[str, bytes] = {}
_LOCK = threading.Lock()


def secret_of(state: ServiceState) -> bytes:
    """The signing key: the configured one, else the one kept beside the warehouse (made on
    first use, readable by the service's user only)."""
    cfg = state.settings.serving
    if cfg.session_secret is not None:
        return cfg.session_secret.get_secret_value().encode()
    path = Path(state.settings.paths.warehouse).resolve().parent / "session.key"
    with _LOCK:
        if str(path) not in _SECRETS:
            _SECRETS[str(path)] = _read_or_make(path)
        return _SECRETS[str(path)]


def _read_or_make(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:  # first worker to get here writes it; the others read it
        f.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def _serializer(state: ServiceState, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_of(state), salt=f"healthscore.dashboard.{salt}")


def sign_in(state: ServiceState, response: Response, key: str) -> Principal:
    """Check `key` (AccessDenied for a wrong one) and set the session cookie."""
    who = state.keys.principal(key)
    token = _serializer(state, "session").dumps({"h": hash_key(key),
                                                 "c": secrets.token_urlsafe(24)})
    _set(state, response, COOKIE, token, int(state.settings.serving.session_hours * 3600))
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return who


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def _set(state: ServiceState, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=state.settings.serving.session_secure_cookie)


def viewer(state: ServiceState, request: Request) -> Viewer:
    """The signed-in viewer, or SignInNeeded (no, a forged, an expired cookie, or a key
    revoked since)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded()
    max_age = int(state.settings.serving.session_hours * 3600)
    try:
        data: Any = _serializer(state, "session").loads(token, max_age=max_age)
        digest, csrf = str(data["h"]), str(data["c"])
    except (BadSignature, KeyError, TypeError):
        raise SignInNeeded("your sign-in has expired: sign in again") from None
    try:
        who = state.keys.principal_of_digest(digest)
    except AccessDenied:
        raise SignInNeeded("that API key is no longer valid") from None
    state.rate.check(who.key_id)
    return Viewer(who, csrf)


def require_role(v: Viewer, role: Role, action: str) -> None:
    if not v.can(role):
        raise Forbidden(f"{action} needs the {role} role; your key {v.who.name!r} has the "
                        f"{v.who.role} role")


def check_csrf(v: Viewer, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(presented, v.csrf):
        raise Forbidden("the form's security token is missing or stale: reload the page and "
                        "try again")


def signin_token(state: ServiceState) -> tuple[str, str]:
    """A fresh token for the sign-in form and the signed value of its cookie."""
    raw = secrets.token_urlsafe(24)
    return raw, _serializer(state, "signin").dumps(raw)


def set_signin_cookie(state: ServiceState, response: Response, signed: str) -> None:
    _set(state, response, SIGNIN_COOKIE, signed, SIGNIN_SECONDS)


def check_signin_token(state: ServiceState, request: Request, presented: str | None) -> bool:
    cookie = request.cookies.get(SIGNIN_COOKIE)
    if not cookie or not presented:
        return False
    try:
        raw = _serializer(state, "signin").loads(cookie, max_age=SIGNIN_SECONDS)
    except BadSignature:
        return False
    return hmac.compare_digest(str(raw), presented)
