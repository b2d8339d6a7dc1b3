"""The score store out of reach: bounded waits, a 503 with Retry-After, recovery by itself.

The store (PostgreSQL in production) can stop, restart or fail over under a running service.
A request that needs it must neither hang nor answer 500: the engine waits a bounded time for a
connection (`engine_options`: connect timeout, pool timeout, a ping before each checkout so a
connection broken by a restart is replaced instead of failing the request), and an error of
the connection itself (`OUTAGE_ERRORS`) becomes 503 with `Retry-After` (`store_unavailable`).
Nothing is cached as broken: the next request after the database is back connects again.
Statement parameters are kept out of error messages (`hide_parameters`), so a key's hash or a
payload never reaches a log line or an error body. It decides nothing about what a route does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Request
from sqlalchemy import exc as sa_exc

from serving.problems import ProblemResponse, problem

logger = logging.getLogger(__name__)

OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
    sa_exc.DisconnectionError)
"""Connection-level failures (refused, reset, timed out, pool exhausted); a constraint
violation or a bad statement is a bug and stays a 500."""
RETRY_AFTER_SECONDS = 5
CONNECT_TIMEOUT_SECONDS = 5
POOL_TIMEOUT_SECONDS = 5.0

_last_logged = [0.0]


def engine_options(url: str) -> dict[str, Any]:
    """create_engine keywords for the service's store at `url`."""
    if url.startswith("sqlite"):
        # Concurrent writers wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": 30, "check_same_thread": False},
                "hide_parameters": True}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
            "pool_timeout": POOL_TIMEOUT_SECONDS, "hide_parameters": True,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}


def store_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    """503 problem response for a request whose store connection failed."""
    now = time.monotonic()
    if now - _last_logged[0] > 10:  # one line per outage burst, not one per request
        _last_logged[0] = now
        orig = getattr(exc, "orig", None)
        logger.warning("score store unreachable (%s%s); answering 503", type(exc).__name__,
                       f": {type(orig).__name__}" if orig is not None else "")
    return problem(request, 503, "the score store is unreachable; retry after "
                   f"{RETRY_AFTER_SECONDS} seconds",
                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
