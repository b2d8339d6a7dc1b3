"""The CSM dashboard: server-rendered pages the BentoML service mounts at `/`, beside the API at
`/v1`, in the same process and on the same state (`app.state.service`).

Owns the wiring: sign-in and sign-out, the pages (one module each), the static files (the
dashboard's CSS and script, and plotly.js from the plotly package), the answer to a request
without a session (the sign-in page, never data), the error pages, and the headers every
answer carries: a Content-Security-Policy that lets a page load from this service only, no
caching of pages with data, no framing. Any other path is answered here too (404), so nothing
BentoML would serve at the root (its generic page, its static content) is reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import plotly
from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import AccessDenied
from serving.dashboard import account_page, portfolio_page, segments_page, settings_page
from serving.dashboard.session import (
    Forbidden,
    SignInNeeded,
    check_signin_token,
    set_signin_cookie,
    sign_in,
    sign_out,
    signin_token,
    viewer,
)
from serving.dashboard.web import HERE, Acting, render, state_of
from serving.errors import Conflict, NotFound, Unavailable
from serving.guards import RateLimited
from serving.payload import PayloadError

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
"""Plotly.js sets inline styles on the charts it draws; nothing else is inline."""


class SecurityHeaders:
    """The headers of every dashboard answer (pages are never cached: they hold data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"),
                            (b"x-frame-options", b"DENY"),
                            (b"cache-control", b"private, max-age=3600" if static
                             else b"no-store")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="HealthScore dashboard")
app.add_middleware(SecurityHeaders)
app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")


@app.get("/static-lib/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    """plotly.js as the installed plotly package ships it (its version is pinned)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"cache-control": "private, max-age=86400"})


# --- sign-in ----------------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a path of this site (never `//host` or a full URL) is followed after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signin_page(request: Request, status: int, message: str | None, target: str) -> Response:
    state = state_of(request)
    token, signed = signin_token(state)
    page = render(request, "signin.html", None, status=status, message=message, next=target,
                  token=token)
    set_signin_cookie(state, page, signed)
    return page


@app.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None,
                message: Annotated[str | None, Query(max_length=300)] = None) -> Response:
    return _signin_page(request, 200, message, _safe_next(next))


@app.post("/signin")
def signin(request: Request, key: Annotated[str, Form(max_length=500)] = "",
           token: Annotated[str, Form(max_length=200)] = "",
           next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    state = state_of(request)
    target = _safe_next(next)
    if not check_signin_token(state, request, token):
        return _signin_page(request, 403, "The sign-in form expired: try again.", target)
    response = RedirectResponse(target, status_code=303)
    try:
        sign_in(state, response, key.strip())
    except AccessDenied:
        return _signin_page(request, 401, "That API key is not valid.", target)
    return response


@app.post("/signout")
def signout(_act: Acting) -> Response:
    response = RedirectResponse("/signin?message=Signed+out.", status_code=303)
    sign_out(response)
    return response


for _page in (portfolio_page, account_page, segments_page, settings_page):
    app.include_router(_page.router)


# --- answers without data ---------------------------------------------------------------------
def _error(request: Request, status: int, title: str, message: str) -> Response:
    try:
        v = viewer(state_of(request), request)
    except Exception:  # noqa: BLE001 - an error page is shown whoever asks
        v = None
    return render(request, "error.html", v, status=status, title=title, message=message)


@app.exception_handler(SignInNeeded)
async def _sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method == "GET":
        from urllib.parse import urlencode

        query = {"next": target, **({"message": exc.message} if exc.message else {})}
        return RedirectResponse(f"/signin?{urlencode(query)}", status_code=303)
    return _signin_page(request, 401, exc.message or "Sign in first.", _safe_next(target))


@app.exception_handler(Forbidden)
async def _forbidden(request: Request, exc: Forbidden) -> Response:
    return _error(request, 403, "Not allowed", exc.message)


@app.exception_handler(NotFound)
async def _not_found(request: Request, exc: NotFound) -> Response:
    return _error(request, 404, "Not found", str(exc))


@app.exception_handler(Conflict)
async def _conflict(request: Request, exc: Conflict) -> Response:
    return _error(request, 409, "Conflict", str(exc))


@app.exception_handler(PayloadError)
async def _payload(request: Request, exc: PayloadError) -> Response:
    return _error(request, 422, "Not accepted", str(exc))


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return _error(request, 422, "Not accepted", where)


@app.exception_handler(Unavailable)
async def _unavailable(request: Request, exc: Unavailable) -> Response:
    return _error(request, 503, "Not available yet", str(exc))


@app.exception_handler(RateLimited)
async def _limited(request: Request, exc: RateLimited) -> Response:
    return _error(request, 429, "Too many requests", "slow down and try again shortly")


@app.api_route("/{path:path}", methods=["GET", "POST", "HEAD"], include_in_schema=False)
async def _nowhere(request: Request, path: str) -> Response:
    """Every other path (BentoML's own root page and static content included): a 404 for a
    signed-in viewer, else the sign-in page."""
    viewer(state_of(request), request)
    return _error(request, 404, "Not found", f"no page at /{path}")
