"""The dashboard's charts as plotly figures (the `data` and `layout` of plotly's figure schema),
sent to the page as JSON and drawn there by the plotly.js the service serves itself
(`/static-lib/plotly.min.js`, from the plotly package).

Plain dicts rather than `plotly.graph_objects`: validating a figure object costs tens of
milliseconds a chart, more than the rest of the page. Pure functions of numbers already computed
elsewhere: no score, no probability is made here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup

BAND_COLOURS = {"Champion": "#1a7f37", "Healthy": "#4c9a2a", "Needs Attention": "#bf8700",
                "At Risk": "#cf222e"}
"""By band name; a band the rules name otherwise gets plotly's next colour."""
ACCENT = "#0969da"
_LAYOUT: dict[str, Any] = {"margin": {"l": 48, "r": 16, "t": 16, "b": 40}, "height": 260,
                           "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                           "font": {"family": "system-ui, sans-serif", "size": 12}}


def figure(data: list[dict[str, Any]], **layout: Any) -> Markup:
    """The figure as JSON that is safe inside a `<script type="application/json">`."""
    text = json.dumps({"data": data, "layout": {**_LAYOUT, **layout}}, default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


def band_donut(counts: Mapping[str, int], order: Sequence[str]) -> Markup:
    names = [b for b in order if counts.get(b)]
    return figure([{"type": "pie", "labels": names, "values": [counts[b] for b in names],
                    "hole": 0.55, "sort": False, "textinfo": "value",
                    "marker": {"colors": [BAND_COLOURS.get(b) for b in names]}}],
                  showlegend=True)


def line(points: Sequence[tuple[date, float]], name: str, y_range: tuple[float, float] = (0, 100)
         ) -> Markup:
    return figure([{"type": "scatter", "mode": "lines+markers", "name": name,
                    "x": [str(d) for d, _ in points], "y": [v for _, v in points],
                    "line": {"color": ACCENT}}],
                  yaxis={"range": list(y_range), "title": {"text": name}})


def bars(hist: Mapping[str, Any], x_title: str, colour: str = ACCENT) -> Markup:
    return figure([{"type": "bar", "x": hist["x"], "y": hist["y"], "width": hist.get("width"),
                    "marker": {"color": colour}}],
                  xaxis={"title": {"text": x_title}, "tickformat": ".0%", "range": [0, 1]},
                  yaxis={"title": {"text": "accounts"}}, bargap=0.05)


def history(points: Sequence[tuple[str, float | None]], overrides: Sequence[tuple[str, float]]
            ) -> Markup:
    data = [{"type": "scatter", "mode": "lines+markers", "name": "score",
             "x": [d for d, _ in points], "y": [v for _, v in points],
             "line": {"color": ACCENT}}]
    if overrides:
        data.append({"type": "scatter", "mode": "markers", "name": "manual score",
                     "x": [d for d, _ in overrides], "y": [v for _, v in overrides],
                     "marker": {"symbol": "diamond", "size": 10, "color": "#8250df"}})
    return figure(data, yaxis={"range": [0, 100], "title": {"text": "score"}})


def logins(points: Sequence[tuple[date, int]], start: date, end: date) -> Markup:
    """Active users per day over the whole window (a day without activity is a zero)."""
    by_day = dict(points)
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    return figure([{"type": "bar", "name": "active users", "x": [str(d) for d in days],
                    "y": [by_day.get(d, 0) for d in days], "marker": {"color": ACCENT}}],
                  yaxis={"title": {"text": "active users"}},
                  xaxis={"type": "date", "range": [str(start), str(end)]}, bargap=0.1)


def grouped_bands(segments: Mapping[str, Mapping[str, int]], order: Sequence[str]) -> Markup:
    """Band mix per segment, as shares of the segment's accounts."""
    names = list(segments)
    data = [{"type": "bar", "name": band, "x": names,
             "y": [segments[s].get(band, 0) / max(1, sum(segments[s].values())) for s in names],
             "marker": {"color": BAND_COLOURS.get(band)}} for band in order]
    return figure(data, barmode="stack",
                  yaxis={"tickformat": ".0%", "title": {"text": "share of accounts"}})
