"""The HTTP face of the HealthScore API: a FastAPI app the BentoML service mounts at `/v1`.

Owns what every request passes through before a route: the body size limit (413 before the
body is read), the text guard and the check of query parameters (422 naming the field, from
`serving.guards`), `Idempotency-Key` replay of writes (`serving.idempotency`), the problem
details every error is answered with (`serving.problems`), and the routes of each resource
(`serving.routes`). The state is `app.state.service`, set by the service at start-up (tests may
set it directly); the middleware reads its settings from there.
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.routing import Match

from serving import api_docs, problems
from serving.auth import HEADER
from serving.errors import NotFound
from serving.guards import BodyLimit, TextGuard, known_query
from serving.idempotency import IdempotencyMiddleware
from serving.routes import admin, alerts, changes, operations, portfolio, reports, scores
from serving.store_outage import OUTAGE_ERRORS, store_unavailable

logger = logging.getLogger(__name__)

app = FastAPI(
    # BentoML traces and meters every request at its own layer already; FastAPI's native
    # OpenTelemetry would add spans per dependency under BentoML's provider, at a cost on
    # every request.
    telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    title="HealthScore API",
    version="1",
    description="Customer health scores, churn and expansion probabilities, alerts and events. "
    f"Send an API key in the `{HEADER}` header (reader, writer or admin role). Every error is "
    "an RFC 9457 problem (`application/problem+json`); a 422 names each refused field. A POST "
    "that changes something may carry an `Idempotency-Key` header: a retry with the same key "
    "and body gets the first answer again instead of making the change twice.",
    dependencies=[Depends(known_query)],
    # Swagger UI from the installed `swagger-ui-bundle` package (below), not from a CDN: the
    # docs work offline and the page loads nothing from another host. ReDoc ships no local copy.
    docs_url=None,
    redoc_url=None,
)
app.add_middleware(IdempotencyMiddleware)
app.add_middleware(TextGuard)
app.add_middleware(BodyLimit)
for _routes in (scores, reports, changes, alerts, portfolio, operations, admin):
    app.include_router(_routes.router)
api_docs.install(app)
problems.install(app)
for _outage in OUTAGE_ERRORS:  # the store out of reach: 503 + Retry-After, never a hang or 500
    app.add_exception_handler(_outage, store_unavailable)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


@app.api_route("/{path:path}", methods=list(_METHODS), include_in_schema=False)
async def _nowhere(request: Request, path: str) -> None:
    """Any other path under `/v1`: a 405 where the path exists for other methods, else a 404,
    both as problems (BentoML's own 404 for an unmatched mount path is plain text)."""
    others = [r for r in app.router.routes if getattr(r, "endpoint", None) is not _nowhere]
    allowed = [m for m in _METHODS
               if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in others)]
    if allowed:
        raise HTTPException(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed)})
    raise NotFound(f"no such path: {request.url.path}")
