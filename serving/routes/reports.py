"""The read routes: an account's history, the listing, the export, segments, the report."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from serving import reports, schemas
from serving.routes.deps import ERRORS, Reader, State

router = APIRouter(tags=["reports"])


@router.get("/accounts/{account_id}/history", responses=ERRORS)
def history(account_id: Annotated[str, Path(min_length=1, max_length=200)], state: State,
            _who: Reader, start: date | None = None, end: date | None = None
            ) -> dict[str, Any]:
    """Stored scores of the account over time, with its overrides."""
    return reports.history(state, account_id, start, end)


@router.get("/scores", response_model=schemas.ScorePage, responses=ERRORS)
def list_scores(
    state: State, _who: Reader,
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
) -> schemas.ScorePage:
    """Stored scores of one date (default: the latest), filtered, sorted and paged."""
    return reports.list_scores(state, as_of=asOf, band=band, status=status, grade=grade,
                              min_score=minScore, max_score=maxScore, sort=sort, order=order,
                              page=page, page_size=pageSize)


MEDIA = {"csv": "text/csv", "json": "application/json",
         "parquet": "application/vnd.apache.parquet"}


@router.get("/exportScores", response_class=StreamingResponse, responses={
    **ERRORS, 200: {"description": "The scores, as the format asked.",
                    "content": {media: {} for media in MEDIA.values()}}})
def export_scores(state: State, _who: Reader,
                  format: Literal["csv", "json", "parquet"] = "csv",  # noqa: A002
                  start: date | None = None, end: date | None = None) -> StreamingResponse:
    """Stored scores for a date range, streamed as CSV, JSON or Parquet."""
    name = f"health_scores.{format}"
    return StreamingResponse(reports.export(state, format, start, end), media_type=MEDIA[format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/compareSegment", response_model=schemas.SegmentComparison,
          responses=ERRORS)
def compare_segment(req: schemas.SegmentRequest, state: State, _who: Reader
                    ) -> schemas.SegmentComparison:
    """A segment's score distribution, bands, averages and differing dimensions vs the rest."""
    return reports.compare_segment(state, req)


@router.post("/generateReport", response_model=schemas.Report, responses=ERRORS)
def generate_report(req: schemas.ReportRequest, state: State, _who: Reader) -> schemas.Report:
    """Period KPIs from the stored scores and alerts."""
    return reports.report(state, req)
