"""The HTTP face of the HealthScore API: a FastAPI app the BentoML service mounts at `/v1`.

Owns routes, the role each route needs (reader: reads; writer: update, weights, thresholds,
alerts; admin: webhooks and keys), turning engine errors into status codes (404 unknown,
422 naming the field, 409 conflict, 503 unavailable, 401/403 with a clear message) and
streaming exports. Every handler is one engine call: no business rule lives here. The engine
is `app.state.engine`, set by the service at start-up (tests may set it directly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving import api
from serving.auth import HEADER, AccessDenied, Principal, Role
from serving.engine import Conflict, HealthScoreEngine, NotFound, PayloadError, Unavailable

logger = logging.getLogger(__name__)

_key_header = APIKeyHeader(name=HEADER, auto_error=False, description="An API key.")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")

app = FastAPI(
    # BentoML traces and meters every request at its own layer already; FastAPI's native
    # OpenTelemetry would add spans per dependency under BentoML's provider (~6 ms a request).
    telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    title="HealthScore API",
    version="1",
    description="Customer health scores, churn and expansion probabilities, alerts and events. "
    f"Send an API key in the `{HEADER}` header (reader, writer or admin role).",
)


async def engine_of(request: Request) -> HealthScoreEngine:
    # async: a dependency without I/O costs no thread-pool hop.
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise Unavailable("the service is starting: the engine is not loaded yet")
    return engine  # type: ignore[no-any-return]


def needs(role: Role, action: str) -> Callable[..., Principal]:
    async def check(request: Request,
              key: Annotated[str | None, Depends(_key_header)] = None,
              bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
              ) -> Principal:
        presented = key or (bearer.credentials if bearer is not None else None)
        # A cached key is a dict look-up; the store is read at most once per key_cache_seconds.
        return (await engine_of(request)).keys.require(presented, role, action)

    return check


Engine = Annotated[HealthScoreEngine, Depends(engine_of)]
Reader = Annotated[Principal, Depends(needs("reader", "this endpoint"))]
Writer = Annotated[Principal, Depends(needs("writer", "this change"))]
Admin = Annotated[Principal, Depends(needs("admin", "managing webhooks and keys"))]


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


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": api.Problem, "description": "No or an invalid API key."},
    403: {"model": api.Problem, "description": "The key's role may not do this."},
    404: {"model": api.Problem, "description": "Unknown account or object."},
}


# --- scores ---------------------------------------------------------------------------------------

@app.get("/health", tags=["service"])
def health(engine: Engine) -> dict[str, Any]:
    """Liveness and what is loaded (no key needed)."""
    return {"status": "ok", "rulesVersion": engine.rules.config_version,
            "models": sorted(engine._labels()), "modelsNote": engine.models_note,
            "warehouseSnapshot": engine.snapshot.generation,
            "asOf": str(engine.default_as_of)}


@app.post("/calculate", response_model=api.HealthScore, tags=["scores"], responses=ERRORS)
def calculate(req: api.CalculateRequest, engine: Engine, _who: Reader) -> api.HealthScore:
    """An account's health score (stored once per date and rules version; events fire)."""
    return engine.calculate(req)


@app.post("/recalculate", response_model=api.HealthScore, tags=["scores"], responses=ERRORS)
def recalculate(req: api.CalculateRequest, engine: Engine, _who: Writer) -> api.HealthScore:
    """Rebuild the account's features from the data now, rescore and store (events fire)."""
    return engine.calculate(req, fresh=True)


@app.post("/predict", response_model=api.Prediction, tags=["scores"], responses=ERRORS)
async def predict(req: api.PredictRequest, engine: Engine, _who: Reader) -> api.Prediction:
    """30/60/90-day churn and expansion probabilities and the projected score."""
    if engine.precomputed(req.accountId, req.asOf, req.activity):
        return engine.predict(req)  # in memory: answered on the event loop, no thread hop
    return await run_in_threadpool(engine.predict, req)


@app.post("/analyze", response_model=api.Analysis, tags=["scores"], responses=ERRORS)
def analyze(req: api.AnalyzeRequest, engine: Engine, _who: Reader) -> api.Analysis:
    """Score, prediction and the factors behind both."""
    return engine.analyze(req)


@app.get("/accounts/{account_id}/summary", response_class=PlainTextResponse, tags=["scores"],
         responses={**ERRORS, 200: {"content": {"text/markdown": {}}}})
def summary(account_id: Annotated[str, Path(min_length=1, max_length=200)], engine: Engine,
            _who: Reader, asOf: date | None = None) -> Response:
    """The account's health summary in Markdown."""
    return PlainTextResponse(engine.summary(account_id, asOf), media_type="text/markdown")


@app.get("/accounts/{account_id}/history", tags=["scores"], responses=ERRORS)
def history(account_id: Annotated[str, Path(min_length=1, max_length=200)], engine: Engine,
            _who: Reader, start: date | None = None, end: date | None = None
            ) -> dict[str, Any]:
    """Stored scores of the account over time, with its overrides."""
    return engine.history(account_id, start, end)


@app.get("/scores", response_model=api.ScorePage, tags=["scores"], responses=ERRORS)
def list_scores(
    engine: Engine, _who: Reader,
    asOf: date | None = None,
    band: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    grade: Annotated[str | None, Query(max_length=8)] = None,
    minScore: Annotated[float | None, Query(ge=0, le=100)] = None,
    maxScore: Annotated[float | None, Query(ge=0, le=100)] = None,
    sort: Literal["score", "accountId", "previousScore", "grade"] = "score",
    order: Literal["asc", "desc"] = "asc",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> api.ScorePage:
    """Stored scores of one date (default: the latest), filtered, sorted and paged."""
    return engine.list_scores(as_of=asOf, band=band, status=status, grade=grade,
                              min_score=minScore, max_score=maxScore, sort=sort, order=order,
                              page=page, page_size=pageSize)


MEDIA = {"csv": "text/csv", "json": "application/json",
         "parquet": "application/vnd.apache.parquet"}


@app.get("/exportScores", tags=["scores"], responses=ERRORS)
def export_scores(engine: Engine, _who: Reader,
                  format: Literal["csv", "json", "parquet"] = "csv",  # noqa: A002
                  start: date | None = None, end: date | None = None) -> StreamingResponse:
    """Stored scores for a date range, streamed as CSV, JSON or Parquet."""
    name = f"health_scores.{format}"
    return StreamingResponse(engine.export(format, start, end), media_type=MEDIA[format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@app.post("/compareSegment", response_model=api.SegmentComparison, tags=["reports"],
          responses=ERRORS)
def compare_segment(req: api.SegmentRequest, engine: Engine, _who: Reader
                    ) -> api.SegmentComparison:
    """A segment's score distribution, bands, averages and differing dimensions vs the rest."""
    return engine.compare_segment(req)


@app.post("/generateReport", response_model=api.Report, tags=["reports"], responses=ERRORS)
def generate_report(req: api.ReportRequest, engine: Engine, _who: Reader) -> api.Report:
    """Period KPIs from the stored scores and alerts."""
    return engine.report(req)


# --- changes (writer) -----------------------------------------------------------------------------

@app.post("/update", response_model=api.HealthScore, tags=["changes"], responses=ERRORS)
def update(req: api.OverrideRequest, engine: Engine, who: Writer) -> api.HealthScore:
    """A manual score with a reason, an author and an expiry (audited; emits `updated`)."""
    return engine.update(req, who.name)


@app.post("/setWeights", response_model=api.ConfigVersionOut, tags=["changes"],
          responses=ERRORS)
def set_weights(req: api.WeightsRequest, engine: Engine, who: Writer) -> api.ConfigVersionOut:
    """New rules version with these dimension weights."""
    return engine.set_weights(req, who.name)


@app.post("/setThresholds", response_model=api.ConfigVersionOut, tags=["changes"],
          responses=ERRORS)
def set_thresholds(req: api.ThresholdsRequest, engine: Engine, who: Writer
                   ) -> api.ConfigVersionOut:
    """New rules version with these grades, bands, status cuts or flag thresholds."""
    return engine.set_thresholds(req, who.name)


@app.get("/config/versions", response_model=list[api.ConfigVersionOut], tags=["changes"],
         responses=ERRORS)
def config_versions(engine: Engine, _who: Reader) -> list[api.ConfigVersionOut]:
    return engine.config_versions()


@app.post("/createAlert", response_model=api.AlertOut, tags=["alerts"], responses=ERRORS)
def create_alert(req: api.AlertRequest, engine: Engine, who: Writer) -> api.AlertOut:
    return engine.create_alert(req, who.name)


@app.post("/resolveAlert", response_model=api.AlertOut, tags=["alerts"],
          responses={**ERRORS, 409: {"model": api.Problem}})
def resolve_alert(req: api.ResolveRequest, engine: Engine, who: Writer) -> api.AlertOut:
    return engine.resolve_alert(req.alertId, req, who.name)


@app.get("/alerts", response_model=list[api.AlertOut], tags=["alerts"], responses=ERRORS)
def alerts(engine: Engine, _who: Reader,
           accountId: Annotated[str | None, Query(max_length=200)] = None,
           status: Literal["open", "resolved"] | None = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[api.AlertOut]:
    return engine.alerts(accountId, status, limit, offset)


# --- admin ----------------------------------------------------------------------------------------

@app.post("/webhooks", response_model=api.WebhookOut, status_code=201, tags=["admin"],
          responses=ERRORS)
def add_webhook(req: api.WebhookRequest, engine: Engine, who: Admin) -> api.WebhookOut:
    """Register a receiver; the response shows its signing secret once."""
    return engine.add_webhook(req, who.name)


@app.get("/webhooks", response_model=list[api.WebhookOut], tags=["admin"], responses=ERRORS)
def webhooks(engine: Engine, _who: Admin) -> list[api.WebhookOut]:
    return engine.webhooks()


@app.delete("/webhooks/{hook_id}", status_code=204, tags=["admin"], responses=ERRORS)
def delete_webhook(hook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: Engine,
                   who: Admin) -> Response:
    engine.delete_webhook(hook_id, who.name)
    return Response(status_code=204)


@app.get("/webhooks/{hook_id}/deliveries", response_model=list[api.DeliveryOut],
         tags=["admin"], responses=ERRORS)
def deliveries(hook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: Engine, _who: Admin,
               status: Literal["pending", "delivered", "dead"] | None = None
               ) -> list[api.DeliveryOut]:
    return engine.deliveries(hook_id, status)


@app.post("/keys", response_model=api.KeyOut, status_code=201, tags=["admin"],
          responses=ERRORS)
def add_key(req: api.KeyRequest, engine: Engine, who: Admin) -> api.KeyOut:
    """Mint a key; the response shows it once (only its hash is stored)."""
    return engine.add_key(req, who.name)


@app.get("/keys", response_model=list[api.KeyOut], tags=["admin"], responses=ERRORS)
def list_keys(engine: Engine, _who: Admin) -> list[api.KeyOut]:
    return engine.list_keys()


@app.delete("/keys/{key_id}", status_code=204, tags=["admin"], responses=ERRORS)
def revoke_key(key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: Engine,
               who: Admin) -> Response:
    engine.revoke_key(key_id, who.name)
    return Response(status_code=204)
