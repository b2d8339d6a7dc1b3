"""What every route depends on: the service state and the caller's key with its role.

A route declares `State` for the loaded state, and `Reader`, `Writer` or `Admin` for the role it
needs; a missing or wrong key is refused (401/403), and a key over its rate (429), before the
handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from serving import schemas
from serving.auth import HEADER, Principal, Role
from serving.errors import Unavailable
from serving.state import ServiceState

_key_header = APIKeyHeader(name=HEADER, auto_error=False, description="An API key.")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


async def state_of(request: Request) -> ServiceState:
    # async: a dependency without I/O costs no thread-pool hop.
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise Unavailable("the service is starting: its state is not loaded yet")
    return state  # type: ignore[no-any-return]


def needs(role: Role, action: str) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request,
                    key: Annotated[str | None, Depends(_key_header)] = None,
                    bearer: Annotated[HTTPAuthorizationCredentials | None,
                                      Depends(_bearer)] = None,
                    ) -> Principal:
        presented = key or (bearer.credentials if bearer is not None else None)
        # A cached key is a dict look-up, answered on the event loop; the store is read at most
        # once per key_cache_seconds, and that read runs in the thread pool, so a slow store
        # stalls only the requests waiting on it, not every request the loop serves.
        state = await state_of(request)
        if state.keys.answers_from_cache(presented):
            who = state.keys.require(presented, role, action)
        else:
            who = await run_in_threadpool(state.keys.require, presented, role, action)
        state.rate.check(who.key_id)
        return who

    return check


State = Annotated[ServiceState, Depends(state_of)]
Reader = Annotated[Principal, Depends(needs("reader", "this endpoint"))]
Writer = Annotated[Principal, Depends(needs("writer", "this change"))]
Admin = Annotated[Principal, Depends(needs("admin", "managing webhooks and keys"))]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.Problem, "description": "No or an invalid API key."},
    403: {"model": schemas.Problem, "description": "The key's role may not do this."},
    404: {"model": schemas.Problem, "description": "Unknown account or object."},
    422: {"model": schemas.Problem, "description": "A refused field, query parameter or "
          "header, each named in `errors`."},
    429: {"model": schemas.Problem, "description": "The key is over its rate limit; see "
          "`Retry-After`."},
}
