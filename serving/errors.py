"""The typed errors of the service's operations, which the app turns into problem responses:
NotFound 404, PayloadError and InvalidInput 422 (naming the field), Conflict 409, Unavailable
503."""

from __future__ import annotations

from fastapi import HTTPException

from serving.payload import PayloadError


class NotFound(LookupError):
    """An unknown account, alert, webhook, key or rules profile."""


class Conflict(RuntimeError):
    """The request contradicts the state (resolving an alert that is already resolved)."""


class Unavailable(RuntimeError):
    """What the request needs is not loaded: no warehouse yet, the service still starting."""


class InvalidInput(HTTPException):
    """A 422 found before FastAPI's own validation (FastAPI lets an HTTPException raised while
    it reads the body through, where any other error would become a 400)."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(status_code=422, detail=msg)
        self.loc = loc
        self.msg = msg


__all__ = ["Conflict", "InvalidInput", "NotFound", "PayloadError", "Unavailable"]
