"""The score routes: health, calculate, recalculate, predict, analyze, the summary."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from serving import schemas, scores
from serving.routes.deps import ERRORS, Reader, State, Writer

router = APIRouter(tags=["scores"])


@router.get("/health", tags=["service"])
def health(state: State) -> dict[str, Any]:
    """Liveness and what is loaded (no key needed)."""
    return {"status": "ok", "rulesVersion": state.rules.config_version,
            "models": sorted(state.labels), "modelsNote": state.models_note,
            "warehouseSnapshot": state.snapshot.generation,
            "asOf": str(state.default_as_of)}


@router.post("/calculate", response_model=schemas.HealthScore, responses=ERRORS)
def calculate(req: schemas.CalculateRequest, state: State, _who: Reader) -> schemas.HealthScore:
    """An account's health score (stored once per date and rules version; events fire)."""
    return scores.calculate(state, req)


@router.post("/recalculate", response_model=schemas.HealthScore, responses=ERRORS)
def recalculate(req: schemas.CalculateRequest, state: State, _who: Writer) -> schemas.HealthScore:
    """Rebuild the account's features from the data now, rescore and store (events fire)."""
    return scores.calculate(state, req, fresh=True)


@router.post("/predict", response_model=schemas.Prediction, responses=ERRORS)
async def predict(req: schemas.PredictRequest, state: State, _who: Reader) -> schemas.Prediction:
    """30/60/90-day churn and expansion probabilities and the projected score."""
    if state.precomputed(req.accountId, req.asOf, req.activity):
        return scores.predict(state, req)  # in memory: answered on the event loop, no thread hop
    return await run_in_threadpool(scores.predict, state, req)


@router.post("/analyze", response_model=schemas.Analysis, responses=ERRORS)
def analyze(req: schemas.AnalyzeRequest, state: State, _who: Reader) -> schemas.Analysis:
    """Score, prediction and the factors behind both."""
    return scores.analyze(state, req)


@router.get("/accounts/{account_id}/summary", response_class=PlainTextResponse,
         responses={**ERRORS, 200: {"content": {"text/markdown": {}}}})
def summary(account_id: Annotated[str, Path(min_length=1, max_length=200)], state: State,
            _who: Reader, asOf: date | None = None) -> Response:
    """The account's health summary in Markdown."""
    return PlainTextResponse(scores.summary(state, account_id, asOf), media_type="text/markdown")
