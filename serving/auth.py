"""API keys and roles: who may call which endpoint.

Owns minting keys (shown once, stored only as a SHA-256 hash: keys are 256-bit random, so a slow
hash buys nothing), checking a presented key against a required role (reader < writer < admin),
the clear 401/403 messages, and bootstrapping an admin key from configuration. It never logs a
key or a hash, and it knows nothing about HTTP frameworks: `serving.app` turns `AccessDenied`
into a response.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.ops_store import ApiKey, audit, utcnow

logger = logging.getLogger(__name__)

Role = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
KEY_PREFIX = "hs_"
HEADER = "X-API-Key"


class AccessDenied(Exception):
    """A request without the role it needs: `status` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(session: Session, name: str, role: Role, *, key: str | None = None,
               actor: str = "system") -> tuple[ApiKey, str]:
    """Store a new key (random unless given) and return (row, the key in clear, shown once)."""
    if role not in RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    key = key or new_key()
    row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:7], role=role,
                 created_at=utcnow())
    session.add(row)
    session.flush()
    audit(session, actor, "key.created", str(row.id), {"name": name, "role": role})
    logger.info("API key %d (%s, %s) created by %s", row.id, name, role, actor)
    return row, key


def ensure_admin_key(session: Session, key: str, name: str = "bootstrap-admin") -> bool:
    """Make sure the configured admin key exists (idempotent); True when it was added now."""
    digest = hash_key(key)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    if row is not None:
        if row.revoked_at is None and row.role != "admin":
            row.role = "admin"
        return False
    create_key(session, name, "admin", key=key)
    return True


class KeyChecker:
    """Resolves presented keys to principals, with a short cache so a hot endpoint does not hit
    the database each call (a revoked key stops working within `ttl` seconds)."""

    def __init__(self, engine: object, ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def _lookup(self, digest: str) -> Principal | None:
        with Session(self.engine) as session:  # type: ignore[arg-type]
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
            if row is None or row.revoked_at is not None:
                return None
            return Principal(key_id=row.id, name=row.name, role=row.role)  # type: ignore[arg-type]

    def principal(self, key: str | None) -> Principal:
        """The principal of a presented key, or AccessDenied(401)."""
        if not key:
            raise AccessDenied(401, f"missing API key: send it in the {HEADER} header "
                                    "(or Authorization: Bearer <key>)")
        return self.principal_of_digest(hash_key(key))

    def principal_of_digest(self, digest: str) -> Principal:
        """The principal of a key known by its hash (what a signed dashboard cookie carries, so
        the key itself never sits in the browser), or AccessDenied(401)."""
        now = time.monotonic()
        fresh, found = self._cached(digest, now)
        if not fresh:
            found = self._lookup(digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + self.ttl, found)
        if found is None:
            raise AccessDenied(401, "invalid or revoked API key")
        return found

    def require(self, key: str | None, needed: Role, action: str) -> Principal:
        return self.check_role(self.principal(key), needed, action)

    def answers_from_cache(self, key: str | None) -> bool:
        """Whether `principal(key)` would be answered without reading the store (no key, or a
        fresh cache entry)."""
        return not key or self._cached(hash_key(key), time.monotonic())[0]

    def _cached(self, digest: str, now: float) -> tuple[bool, Principal | None]:
        """(whether the cache holds an entry for `digest` fresh at `now`, its principal)."""
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or hit[0] < now:
            return False, None
        return True, hit[1]

    @staticmethod
    def check_role(who: Principal, needed: Role, action: str) -> Principal:
        """`who`, or AccessDenied(403) when its role is below `needed`."""
        if not who.allows(needed):
            raise AccessDenied(403, f"{action} needs the {needed} role; key {who.name!r} has "
                                    f"the {who.role} role")
        return who
