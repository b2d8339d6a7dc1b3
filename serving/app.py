"""The HTTP face of the HealthScore API: a FastAPI app the BentoML service mounts at `/v1`.

Owns turning typed errors into status codes (404 unknown, 422 naming the field, 409 conflict,
503 unavailable, 401/403 with a clear message) and mounting the routes of each resource
(`serving.routes`). The state is `app.state.service`, set by the service at start-up (tests may
set it directly).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serving.auth import HEADER, AccessDenied
from serving.errors import Conflict, NotFound, PayloadError, Unavailable
from serving.routes import admin, alerts, changes, reports, scores
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
    f"Send an API key in the `{HEADER}` header (reader, writer or admin role).",
)
for _routes in (scores, reports, changes, alerts, admin):
    app.include_router(_routes.router)
for _outage in OUTAGE_ERRORS:  # the store out of reach: 503 + Retry-After, never a hang or 500
    app.add_exception_handler(_outage, store_unavailable)


@app.exception_handler(AccessDenied)
def _denied(_request: Request, exc: AccessDenied) -> JSONResponse:
    headers = {"WWW-Authenticate": f'ApiKey header="{HEADER}"'} if exc.status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


@app.exception_handler(NotFound)
def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)


@app.exception_handler(PayloadError)
def _bad_payload(_request: Request, exc: PayloadError) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]},
                        status_code=422)


@app.exception_handler(Conflict)
def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


@app.exception_handler(Unavailable)
def _unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)
