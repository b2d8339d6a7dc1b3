"""What every dashboard page shares: the templates, the signed-in viewer as a dependency, the
checked form of a POST, and links that keep the page's filters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse

from serving.dashboard.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    Viewer,
    check_csrf,
    require_role,
    viewer,
)
from serving.state import ServiceState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def state_of(request: Request) -> ServiceState:
    from serving.errors import Unavailable

    state = getattr(request.app.state, "service", None)
    if state is None:
        raise Unavailable("the service is starting: its state is not loaded yet")
    return state  # type: ignore[no-any-return]


async def _seen(request: Request) -> Viewer:
    # In the thread pool: checking the cookie's key may read the store (see routes.deps).
    return await run_in_threadpool(viewer, state_of(request), request)


@dataclass(frozen=True)
class Action:
    """A POST that passed the CSRF check: who sent it and its form."""

    viewer: Viewer
    form: FormData

    def text(self, name: str, default: str = "") -> str:
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else default


async def _acting(request: Request) -> Action:
    v = await run_in_threadpool(viewer, state_of(request), request)
    form = await request.form()
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    check_csrf(v, token if isinstance(token, str) else None)
    return Action(v, form)


async def _writing(request: Request) -> Action:
    action = await _acting(request)
    require_role(action.viewer, "writer", "this change")
    return action


State = Annotated[ServiceState, Depends(state_of)]
Seen = Annotated[Viewer, Depends(_seen)]
Acting = Annotated[Action, Depends(_acting)]
"""A POST any signed-in role may make (it changes nothing: a what-if, a preview)."""
Writing = Annotated[Action, Depends(_writing)]
"""A POST that changes something: the writer role and the session's CSRF token."""


def render(request: Request, name: str, v: Viewer | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"viewer": v, **context},
                                      status_code=status)


def back(path: str, message: str | None = None) -> RedirectResponse:
    """After a POST, back to a page (303: the browser GETs it), with a short notice."""
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}{urlencode({'notice': message})}" if message else path,
                            status_code=303)


def link(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """`path` with `params` updated by `changes` (None or "" drops a parameter)."""
    merged = {**{k: v for k, v in params.items() if k != "notice"}, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def fmt_number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):,.{digits}f}"


def fmt_percent(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


def fmt_money(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"${v / size:,.1f}{unit}"
    return f"${v:,.0f}"


def fmt_day(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


TREND_ARROWS = {"improving": "▲", "declining": "▼", "stable": "▶"}

templates.env.globals.update(link=link, trend_arrows=TREND_ARROWS)
templates.env.filters.update(num=fmt_number, pct=fmt_percent, money=fmt_money, day=fmt_day)
