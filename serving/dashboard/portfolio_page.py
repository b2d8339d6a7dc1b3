"""The portfolio (`/`): KPI cards, the band donut, the average score over time, the churn and
expansion distributions, and the account table (filtered, sorted and paged on the server,
every filter in the URL) with its CSV export of exactly the filtered rows."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from serving import portfolio_table
from serving.dashboard import charts
from serving.dashboard.web import Seen, State, render
from serving.store import DIMENSIONS

router = APIRouter()

Text = Annotated[str | None, Query(max_length=200)]


def _filters(band: str | None, segment: str | None, owner: str | None, lifecycle: str | None,
             flag: str | None, q: str | None, sort: str, order: str) -> portfolio_table.Filters:
    return portfolio_table.Filters(
        band=band or None, segment=segment or None, owner=owner or None,
        lifecycle=lifecycle or None, flag=flag or None, q=q or None,
        sort=sort if sort in portfolio_table.SORTS else "score", order=order)


@router.get("/", response_class=HTMLResponse)
def portfolio_page(request: Request, state: State, v: Seen, band: Text = None,
                   segment: Text = None, owner: Text = None, lifecycle: Text = None,
                   flag: Text = None, q: Text = None,
                   sort: Annotated[str, Query(max_length=32)] = "score",
                   order: Literal["asc", "desc"] = "asc",
                   page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                   notice: Text = None) -> HTMLResponse:
    frame = portfolio_table.table(state)
    bands = [b.name for b in sorted(state.rules.default.bands, key=lambda b: -b.min)]
    filters = _filters(band, segment, owner, lifecycle, flag, q, sort, order)
    rows = portfolio_table.select_rows(frame, filters)
    shown = portfolio_table.page_of(rows, page, state.settings.serving.dashboard_page_size)
    params = {k: val for k, val in request.query_params.items()}
    fixed = state.derive(("portfolio-page", state.snapshot.generation,
                          state.rules.config_version), lambda: _fixed(frame, bands))
    return render(
        request, "portfolio.html", v, params=params, filters=filters, page=shown,
        as_of=state.portfolio.as_of,  # type: ignore[union-attr]
        dimensions=DIMENSIONS, bands=bands, notice=notice,
        over_time=charts.line(portfolio_table.average_over_time(state), "average score"), **fixed)


def _fixed(frame: Any, bands: list[str]) -> dict[str, Any]:
    """What the page shows whatever the filters: the same until the portfolio is rescored."""
    counts = {str(k): int(n) for k, n in frame["band"].value_counts().items()}
    return {
        "kpis": portfolio_table.kpis(frame, bands[0]),
        "choices": portfolio_table.choices(frame, bands),
        "band_counts": counts, "donut": charts.band_donut(counts, bands),
        "churn_hist": charts.bars(portfolio_table.histogram(frame["churn"]),
                                  "90-day churn probability", "#cf222e"),
        "expansion_hist": charts.bars(portfolio_table.histogram(frame["expansion"]),
                                      "90-day expansion probability", "#1a7f37")}


@router.get("/export.csv")
def export(state: State, _v: Seen, band: Text = None, segment: Text = None,
           owner: Text = None, lifecycle: Text = None, flag: Text = None, q: Text = None,
           sort: Annotated[str, Query(max_length=32)] = "score",
           order: Literal["asc", "desc"] = "asc") -> Response:
    """Exactly the rows the same filters show, every page of them."""
    rows = portfolio_table.select_rows(portfolio_table.table(state),
                                 _filters(band, segment, owner, lifecycle, flag, q, sort, order))
    return Response(portfolio_table.export_csv(rows), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="accounts.csv"'})
