"""The HTTP face of the HealthScore API: a FastAPI app the BentoML service mounts at `/v1`.

Owns what every request passes through before a route: the body size limit (413 before the
body is read), the text guard and the check of query parameters (422 naming the field, from
`serving.guards`), `Idempotency-Key` replay of writes (`serving.idempotency`), the problem
details every error is answered with (`serving.problems`), and the routes of each resource
(`serving.routes`). The state is `app.state.service`, set by the service at start-up (tests may
set it directly); `configure` applies the serving settings the middleware reads.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI

from serving import problems
from serving.auth import HEADER
from serving.guards import TextGuard, known_query
from serving.idempotency import IdempotencyMiddleware
from serving.routes import admin, alerts, changes, reports, scores
from serving.settings import ServingConfig

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
    max_body_size=ServingConfig().max_body_bytes,
    dependencies=[Depends(known_query)],
)
app.add_middleware(IdempotencyMiddleware)
app.add_middleware(TextGuard)
for _routes in (scores, reports, changes, alerts, admin):
    app.include_router(_routes.router)
problems.install(app)


def configure(fastapi_app: FastAPI, cfg: Any) -> None:
    """Apply the serving settings the app's middleware reads (the body limit is part of the
    middleware stack, which FastAPI builds at the first request: rebuilt here)."""
    fastapi_app.max_body_size = cfg.max_body_bytes
    fastapi_app.middleware_stack = None
