"""Drift: how far today's features and scores have moved from the training reference (PSI).

Pure. `build_reference` summarises a frame (the training rows) into quantile bin edges and the
share of rows in each bin, per column, overall and per segment; missing values are a bin of
their own (a source that stops sending data is drift too). `drift_table` measures the population
stability index of a current frame against it:
PSI = sum over bins of (cur - ref) * ln(cur / ref), shares floored at `EPS`. Rule of thumb:
below 0.1 stable, 0.1-0.2 moderate, above 0.2 a shift worth an alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-4
REFERENCE_FILE = "reference.json"
"""Saved next to the model bundles by training (`training.reference`), read by serving."""
ALL = "(all)"


def _edges(values: np.ndarray, bins: int) -> list[float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return []
    inner = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in inner]


def _shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of values in each bin: (-inf, e0], (e0, e1], ..., (e_last, inf), then missing."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not n:
        return [0.0] * (len(edges) + 2)
    finite = np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype=float), values[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return [*(counts / n).tolist(), float((~finite).sum() / n)]


def _numeric(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def build_reference(frame: pd.DataFrame, columns: Sequence[str], *, segment: str | None = None,
                    bins: int = 10) -> dict[str, Any]:
    """The reference distribution of `columns` (numeric), overall and per `segment` value.

    The edges are the overall quantiles; each segment's shares are over the same edges, so a
    segment is compared on the scale the model was trained on."""
    out: dict[str, Any] = {"bins": bins, "segment": segment, "rows": len(frame), "columns": {}}
    groups = [(ALL, frame)]
    if segment is not None and segment in frame.columns:
        groups += [(str(k), g) for k, g in frame.groupby(frame[segment].astype(str), sort=True)]
    for col in columns:
        if col not in frame.columns:
            continue
        edges = _edges(_numeric(frame, col), bins)
        out["columns"][col] = {
            "edges": edges,
            "shares": {name: _shares(_numeric(g, col), edges) for name, g in groups},
            "rows": {name: len(g) for name, g in groups}}
    return out


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    ref = np.maximum(np.asarray(reference, dtype=float), EPS)
    cur = np.maximum(np.asarray(current, dtype=float), EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift_table(reference: dict[str, Any], current: pd.DataFrame, *, min_rows: int = 50
                ) -> list[dict[str, Any]]:
    """PSI of every reference column present in `current`, overall and per segment (segments
    with fewer than `min_rows` rows on either side are left out: their PSI is noise)."""
    seg = reference.get("segment")
    groups = [(ALL, current)]
    if seg is not None and seg in current.columns:
        groups += [(str(k), g) for k, g in current.groupby(current[seg].astype(str), sort=True)]
    rows = []
    for col, ref in reference["columns"].items():
        if col not in current.columns:
            continue
        for name, g in groups:
            base = ref["shares"].get(name)
            if base is None or len(g) < min_rows or ref["rows"].get(name, 0) < min_rows:
                continue
            rows.append({"column": col, "segment": name, "rows": len(g),
                         "psi": round(psi(base, _shares(_numeric(g, col), ref["edges"])), 4)})
    return rows
