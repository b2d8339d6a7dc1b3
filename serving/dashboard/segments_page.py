"""Segments side by side (`/segments`, from `compareSegment`) and the period report (`/report`,
from `generateReport`), a page that prints cleanly."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from serving import reports, schemas
from serving.dashboard import charts
from serving.dashboard.web import Seen, State, render
from serving.payload import PayloadError
from serving.store import DIMENSIONS

router = APIRouter()

Field = Literal["segment", "industry", "region", "plan"]


@router.get("/segments", response_class=HTMLResponse)
def segments_page(request: Request, state: State, v: Seen, field: Field = "segment"
                  ) -> HTMLResponse:
    portfolio = state.portfolio
    values = [] if portfolio is None else sorted(
        portfolio.features[field].dropna().astype(str).unique().tolist())
    compared = [reports.compare_segment(state, schemas.SegmentRequest(field=field, value=val))
                for val in values]
    bands = [b.name for b in sorted(state.rules.default.bands, key=lambda b: -b.min)]
    mix = {c.value: c.segment.bands for c in compared}
    return render(request, "segments.html", v, field=field, compared=compared, bands=bands,
                  dimensions=DIMENSIONS, fields=("segment", "industry", "region", "plan"),
                  mix_chart=charts.grouped_bands(mix, bands) if mix else None)


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, state: State, v: Seen,
                start: Annotated[date | None, Query()] = None,
                end: Annotated[date | None, Query()] = None) -> HTMLResponse:
    end = end or state.default_as_of
    start = start or end - timedelta(days=30)
    error = None
    try:
        report = reports.report(state, schemas.ReportRequest(start=start, end=end))
    except PayloadError as exc:
        report, error = None, str(exc)
    bands = [b.name for b in sorted(state.rules.default.bands, key=lambda b: -b.min)]
    return render(request, "report.html", v, report=report, start=start, end=end,
                  bands=bands, error=error, status=422 if error else 200)
