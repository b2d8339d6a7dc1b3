"""What the API refuses before a handler runs: text that is not Unicode, query parameters it does
not know, and callers over their rate.

- **Unpaired surrogates.** `"\\ud800"` is valid JSON but no valid text: stored, it fails the
  database's encoder; echoed, the response's. `TextGuard` refuses such a body with a 422 naming
  the field. It looks only at bodies that contain a surrogate escape at all, so an ordinary
  request costs one byte search.
- **Unknown query parameters.** `?limit=-1` on a route whose page size is `pageSize` used to
  answer the default page as if asked; `known_query` refuses a parameter the route does not
  declare with a 422 naming it and the ones it does.
- **Size.** `BodyLimit` refuses a body over `serving.max_body_bytes` with 413, before reading
  it when its length is declared.
- **Rate.** `RateLimiter` counts each API key's requests in a moving window (the `limits`
  package, in memory, per worker process) and refuses the excess with 429 and `Retry-After`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import InvalidInput
from serving.problems import problem
from serving.settings import ServingConfig

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")


class RateLimited(HTTPException):
    def __init__(self, retry_after: int, limit: str) -> None:
        super().__init__(status_code=429,
                         detail=f"this key made more than {limit} requests; retry in "
                                f"{retry_after} s",
                         headers={"Retry-After": str(retry_after)})


def unpaired_surrogate(value: Any, loc: list[str | int]) -> list[str | int] | None:
    """Where in a parsed JSON value a text holds an unpaired surrogate (json.loads joins the
    valid pairs), or None."""
    if isinstance(value, str):
        return loc if _SURROGATES.search(value) else None
    items: Iterator[tuple[str | int, Any]]
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and _SURROGATES.search(key):
                return [*loc, key.encode("utf-8", "backslashreplace").decode("ascii")]
        items = iter(value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = unpaired_surrogate(item, [*loc, key])
        if found is not None:
            return found
    return None


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than the "
                                                 f"{limit} bytes this service accepts")


def _body_limit(scope: Scope) -> int:
    state = getattr(scope["app"].state, "service", None)
    return int(state.settings.serving.max_body_bytes) if state is not None else \
        ServingConfig().max_body_bytes


class BodyLimit:
    """ASGI middleware: a declared Content-Length over `serving.max_body_bytes` is answered 413
    before a byte of the body is read; a streamed body is cut off (413) as it passes the limit.

    Starlette's RequestBodyLimitMiddleware does the same but replaces whatever the app answers
    with a plain-text 413 once the declared length is over; this one lets the answer be a
    problem like every other error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _body_limit(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            refused = problem(Request(scope), 413, BodyTooLarge(limit).detail)
            await refused(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class TextGuard:
    """ASGI middleware: a JSON body with an unpaired surrogate is refused (422, the field named)
    when the handler reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def checked() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    _check(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            return message

        await self.app(scope, checked, send)


def _check(body: bytes) -> None:
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        value = json.loads(body)
    except ValueError:
        return  # not JSON: FastAPI's own parser answers it
    where = unpaired_surrogate(value, ["body"])
    if where is not None:
        raise InvalidInput(where, "text with an unpaired surrogate (\\ud800-\\udfff) is not "
                                  "valid Unicode")


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _declared(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


async def known_query(request: Request) -> None:
    """Refuse query parameters the route does not declare (an app-wide dependency)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not getattr(route, "include_in_schema", True):
        return  # not an operation of the API (the catch-all 404)
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = frozenset(_declared(dependant))
    for name in request.query_params:
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise InvalidInput(["query", name],
                               f"unknown query parameter {name!r}; this route takes: {known}")


class RateLimiter:
    """Each key's requests in a moving window; `check` raises `RateLimited` over the limit."""

    def __init__(self, limit: str | None) -> None:
        self.limit = limit
        self._items: list[Any] = []
        if limit:
            from limits import parse_many
            from limits.storage import MemoryStorage
            from limits.strategies import MovingWindowRateLimiter

            self._items = parse_many(limit)
            self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key_id: int) -> None:
        for item in self._items:
            if not self._limiter.hit(item, str(key_id)):
                reset = self._limiter.get_window_stats(item, str(key_id)).reset_time
                raise RateLimited(max(1, math.ceil(reset - time.time())), str(self.limit))
