"""Every error the API answers, as RFC 9457 problem details (`application/problem+json`).

One shape for every 4xx and 5xx: `type` (about:blank: the status says it all), `title` (the
status phrase), `status`, `detail` (one sentence for a person), `instance` (the path asked) and,
for a 422, `errors`: one entry per refused field with `loc` (where it is: `["body", "accountId"]`,
`["query", "limit"]`), `field` (the same, dotted), `msg` and `type`.

A problem body must be encodable whatever the client sent: a client's text is echoed back only
JSON-escaped (`ensure_ascii`), so an unpaired surrogate (valid JSON, not valid Unicode) can never
turn a 422 into a 500. Values longer than `ECHO_LIMIT` are cut.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.auth import HEADER, AccessDenied
from serving.errors import Conflict, InvalidInput, NotFound, PayloadError, Unavailable

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
ECHO_LIMIT = 200
"""Characters of a refused value echoed back in `errors[].input`."""
RETRY_AFTER_SECONDS = 5
"""`Retry-After` of a 503: what a client should wait before asking an unavailable service again."""


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        # ensure_ascii: every character escaped, so no text a client sent can fail to encode.
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"),
                          default=str).encode("ascii")


def problem(request: Request | None, status: int, detail: str, *,
            errors: Sequence[Mapping[str, Any]] | None = None,
            headers: Mapping[str, str] | None = None) -> ProblemResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    if errors is not None:
        body["errors"] = list(errors)
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def field_error(loc: Sequence[str | int], msg: str, kind: str = "value_error",
                value: Any = None) -> dict[str, Any]:
    """One refused field: where it is, what is wrong, and (cut, escaped) what was sent."""
    out: dict[str, Any] = {"loc": list(loc), "field": ".".join(map(str, loc)), "msg": msg,
                           "type": kind}
    if value is not None:
        out["input"] = _echo(value)
    return out


def _echo(value: Any) -> Any:
    if isinstance(value, str):
        return value[:ECHO_LIMIT]
    if isinstance(value, int | float | bool):
        return value
    text = repr(value)
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."


def _validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [field_error(list(e.get("loc", ())), str(e.get("msg", "invalid")),
                        str(e.get("type", "value_error")), e.get("input"))
            for e in errors]


def _summary(errors: Sequence[Mapping[str, Any]]) -> str:
    first = errors[0] if errors else None
    if first is None:
        return "The request is invalid."
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['field'] or 'the request'}: {first['msg']}{more}."


def _problem_document(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with every 4xx/5xx answered as `application/problem+json` (the
    routes declare their error models once, in `serving.routes.deps.ERRORS`)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            for operations in doc.get("paths", {}).values():
                for operation in operations.values():
                    for code, response in operation.get("responses", {}).items():
                        if code[0] in "45":
                            response["content"] = {MEDIA_TYPE: {"schema": {
                                "$ref": "#/components/schemas/Problem"}}}
            app.openapi_schema = doc
        return app.openapi_schema

    return openapi


def install(app: FastAPI) -> None:
    """Register the problem handlers: every typed error of the service, FastAPI's validation
    errors and Starlette's HTTP errors (404 of an unknown path, 405) answer the same shape."""
    app.openapi = _problem_document(app)  # type: ignore[method-assign]

    @app.exception_handler(InvalidInput)
    def _guarded(request: Request, exc: InvalidInput) -> ProblemResponse:
        errors = [field_error(exc.loc, exc.msg)]
        return problem(request, 422, _summary(errors), errors=errors)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = _validation_errors(exc.errors())
        return problem(request, 422, _summary(errors), errors=errors)

    @app.exception_handler(PayloadError)
    def _bad_payload(request: Request, exc: PayloadError) -> ProblemResponse:
        errors = [field_error(list(exc.loc), exc.msg)]
        return problem(request, 422, _summary(errors), errors=errors)

    @app.exception_handler(AccessDenied)
    def _denied(request: Request, exc: AccessDenied) -> ProblemResponse:
        headers = {"WWW-Authenticate": f'ApiKey header="{HEADER}"'} if exc.status == 401 else None
        return problem(request, exc.status, exc.message, headers=headers)

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound) -> ProblemResponse:
        return problem(request, 404, str(exc).strip("'\""))

    @app.exception_handler(Conflict)
    def _conflict(request: Request, exc: Conflict) -> ProblemResponse:
        return problem(request, 409, str(exc))

    @app.exception_handler(Unavailable)
    def _unavailable(request: Request, exc: Unavailable) -> ProblemResponse:
        return problem(request, 503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        return problem(request, exc.status_code, str(exc.detail),
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
        # Logged with the route, never with the request body (it may hold keys or secrets).
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(request, 500, "The service failed to answer this request; it is logged.")
