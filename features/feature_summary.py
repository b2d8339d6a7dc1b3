"""What a built feature frame holds, per health dimension: for the CLI and reports.

Owns the summary of a frame from `features.build.build_features`: rows, columns and the share of
missing values per registry dimension (with its sources connected or not). Pure on the frame;
it renders a rich table but never prints, and never computes features.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from rich.table import Table

from features.registry import DIMENSION_SOURCES, DIMENSIONS, EVENT_TYPE_PREFIX, by_dimension


def missing_by_dimension(frame: pd.DataFrame, connected: Iterable[str],
                         attribute_prefix: str = "attr_") -> pd.DataFrame:
    """One row per dimension: features, share of missing cells, sources and their state."""
    connected = set(connected)
    rows = []
    for dim in DIMENSIONS:
        names = [f.name for f in by_dimension(dim) if f.name in frame.columns]
        if dim == "profile":
            names += [c for c in frame.columns if c.startswith(attribute_prefix)]
        if dim == "usage":
            names += [c for c in frame.columns if c.startswith(EVENT_TYPE_PREFIX)]
        cells = frame[names]
        sources = DIMENSION_SOURCES[dim]
        rows.append({
            "dimension": dim,
            "features": len(names),
            "missing": float(cells.isna().to_numpy().mean()) if len(frame) and names else 0.0,
            "sources": ", ".join(
                s if s in connected else f"{s} (not connected)" for s in sources
            ),
        })
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, connected: Iterable[str], as_of: object,
                  attribute_prefix: str = "attr_") -> Table:
    stats = missing_by_dimension(frame, connected, attribute_prefix)
    table = Table(
        title=f"features as of {as_of}: {len(frame)} rows x {frame.shape[1]} columns",
        title_justify="left",
    )
    for col, justify in (("dimension", "left"), ("features", "right"), ("missing", "right"),
                         ("sources", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in stats.itertuples(index=False):
        table.add_row(r.dimension, str(r.features), f"{r.missing:.1%}", r.sources)
    return table
