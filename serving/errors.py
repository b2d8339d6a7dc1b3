"""The typed errors of the service's operations, which the app turns into problem responses:
NotFound 404, PayloadError 422 (naming the field), Conflict 409, Unavailable 503."""

from __future__ import annotations

from serving.payload import PayloadError


class NotFound(LookupError):
    """An unknown account, alert, webhook, key or rules profile."""


class Conflict(RuntimeError):
    """The request contradicts the state (resolving an alert that is already resolved)."""


class Unavailable(RuntimeError):
    """What the request needs is not loaded: no warehouse yet, the service still starting."""


__all__ = ["Conflict", "NotFound", "PayloadError", "Unavailable"]
