"""The dashboard's charts as plotly figures, sent to the page as JSON and drawn there by the
plotly.js the service serves itself (`/static/plotly.min.js`, from the plotly package).

Pure functions of numbers already computed elsewhere: no score, no probability is made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup

BAND_COLOURS = {"Champion": "#1a7f37", "Healthy": "#4c9a2a", "Needs Attention": "#bf8700",
                "At Risk": "#cf222e"}
"""By band name; a band the rules name otherwise gets plotly's next colour."""
ACCENT = "#0969da"
_LAYOUT: dict[str, Any] = {"margin": {"l": 48, "r": 16, "t": 16, "b": 40}, "height": 260,
                           "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                           "font": {"family": "system-ui, sans-serif", "size": 12}}


def as_json(fig: go.Figure) -> Markup:
    """The figure as JSON that is safe inside a `<script type="application/json">`."""
    text = pio.to_json(fig, validate=False, engine="json")
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def band_donut(counts: Mapping[str, int], order: Sequence[str]) -> Markup:
    names = [b for b in order if counts.get(b)]
    fig = go.Figure(go.Pie(labels=names, values=[counts[b] for b in names], hole=0.55,
                           sort=False, marker={"colors": [BAND_COLOURS.get(b) for b in names]},
                           textinfo="value"))
    fig.update_layout(**_LAYOUT, showlegend=True)
    return as_json(fig)


def line(points: Sequence[tuple[date, float]], name: str, y_range: tuple[float, float] = (0, 100)
         ) -> Markup:
    fig = go.Figure(go.Scatter(x=[str(d) for d, _ in points], y=[v for _, v in points],
                               mode="lines+markers", name=name, line={"color": ACCENT}))
    fig.update_layout(**_LAYOUT, yaxis={"range": list(y_range), "title": name})
    return as_json(fig)


def bars(hist: Mapping[str, Any], x_title: str, colour: str = ACCENT) -> Markup:
    fig = go.Figure(go.Bar(x=hist["x"], y=hist["y"], width=hist.get("width"),
                           marker={"color": colour}))
    fig.update_layout(**_LAYOUT, xaxis={"title": x_title, "tickformat": ".0%",
                                        "range": [0, 1]},
                      yaxis={"title": "accounts"}, bargap=0.05)
    return as_json(fig)


def history(points: Sequence[tuple[str, float | None]], overrides: Sequence[tuple[str, float]]
            ) -> Markup:
    fig = go.Figure(go.Scatter(x=[d for d, _ in points], y=[v for _, v in points],
                               mode="lines+markers", name="score", line={"color": ACCENT}))
    if overrides:
        fig.add_trace(go.Scatter(x=[d for d, _ in overrides], y=[v for _, v in overrides],
                                 mode="markers", name="manual score",
                                 marker={"symbol": "diamond", "size": 10, "color": "#8250df"}))
    fig.update_layout(**_LAYOUT, yaxis={"range": [0, 100], "title": "score"})
    return as_json(fig)


def logins(points: Sequence[tuple[date, int]], start: date, end: date) -> Markup:
    """Active users per day over the whole window (a day without activity is a zero)."""
    by_day = dict(points)
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    fig = go.Figure(go.Bar(x=[str(d) for d in days], y=[by_day.get(d, 0) for d in days],
                           marker={"color": ACCENT}, name="active users"))
    fig.update_layout(**_LAYOUT, yaxis={"title": "active users"},
                      xaxis={"type": "date", "range": [str(start), str(end)]}, bargap=0.1)
    return as_json(fig)


def grouped_bands(segments: Mapping[str, Mapping[str, int]], order: Sequence[str]) -> Markup:
    """Band mix per segment, as shares of the segment's accounts."""
    fig = go.Figure()
    names = list(segments)
    for band in order:
        shares = [segments[s].get(band, 0) / max(1, sum(segments[s].values())) for s in names]
        fig.add_trace(go.Bar(x=names, y=shares, name=band, marker={"color":
                                                                   BAND_COLOURS.get(band)}))
    fig.update_layout(**_LAYOUT, barmode="stack", yaxis={"tickformat": ".0%",
                                                         "title": "share of accounts"})
    return as_json(fig)
