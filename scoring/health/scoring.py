"""`score_frame`: the one rules-based scoring function batch, training and the service call.

Owns assembling a score row per input row: resolve each row's profile, score its dimensions,
combine them, grade, band, colour, status, trend against previous scores and risk flags, and
stamp the profile and config_version. Pure: features in, scores out; no I/O beyond the cached
wording file, no store, no warehouse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.entities import has_churned
from features.registry import datetimes
from scoring.health import composite
from scoring.health.dimensions import score_dimensions
from scoring.health.flags import score_flags
from scoring.health.profiles import SCORED_DIMENSIONS, Rules, resolve_profiles
from scoring.health.trend import classify_trend, match_previous
from scoring.health.wording import Wording, load_wording

DIMENSION_COLUMNS: tuple[str, ...] = tuple(f"dim_{d}" for d in SCORED_DIMENSIONS)
SCORE_COLUMNS: tuple[str, ...] = (
    "account_id", "as_of", "score", "grade", "band", "colour", "status", "trend",
    "previous_score", *DIMENSION_COLUMNS, "missing", "coverage", "profile", "config_version",
    "flags",
)


def _churned(features: pd.DataFrame) -> np.ndarray:
    """Churned on or before the as-of day (`features.entities`, the one rule of who is a
    customer when), when the frame carries `churned_at` (optional column)."""
    if "churned_at" not in features.columns:
        return np.zeros(len(features), dtype=bool)
    return has_churned(datetimes(features["churned_at"]).to_numpy(),
                       datetimes(features["as_of"]).to_numpy())


def score_frame(
    features: pd.DataFrame,
    connected: frozenset[str],
    rules: Rules,
    previous: pd.DataFrame | None = None,
    *,
    wording: Wording | None = None,
    flags: bool = True,
) -> pd.DataFrame:
    """One score row per features row (same order; see SCORE_COLUMNS).

    `features` comes from `features.build.build_features` (account_id, as_of, the registered
    features; NaN = missing; optional `churned_at`). `connected` names the connected contract
    tables: features of other tables count as missing whatever the frame holds. `previous` holds
    earlier scores (account_id, score[, as_of]) for the trend. `score` is NaN only when no
    dimension has data (coverage 0). `flags=False` leaves every row's flags empty: a caller
    that needs only the scores (the previous scores of the trend) skips their wording, most of
    a large batch's cost.
    """
    for col in ("account_id", "as_of"):
        if col not in features.columns:
            raise KeyError(f"the features frame has no {col!r} column")
    wording = wording or load_wording()
    frame = features.reset_index(drop=True)
    n = len(frame)
    connected = frozenset(connected) | {"accounts"}

    which = resolve_profiles(frame, rules)
    profiles = rules.all_profiles
    dims = np.full((n, len(SCORED_DIMENSIONS)), np.nan)
    configured = np.zeros((n, len(SCORED_DIMENSIONS)), dtype=bool)
    score = np.full(n, np.nan)
    coverage = np.zeros(n)
    grade = np.full(n, None, dtype=object)
    band = np.full(n, None, dtype=object)
    colour = np.full(n, None, dtype=object)
    status = np.full(n, None, dtype=object)
    raised: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    churned = _churned(frame)

    for p_index in np.unique(which):
        profile = profiles[p_index]
        rows = np.flatnonzero(which == p_index)
        sub = frame.iloc[rows]
        d = score_dimensions(sub, connected, profile)
        for j, dim in enumerate(SCORED_DIMENSIONS):
            if dim in d.columns:
                dims[rows, j] = d[dim].to_numpy()
                configured[rows, j] = True
        s, cov = composite.score_composite(d, dict(profile.weights))
        score[rows], coverage[rows] = s, cov
        grade[rows] = composite.grade(s, profile)
        band[rows] = composite.band(s, profile)
        colour[rows] = composite.colour(s, profile)
        status[rows] = composite.status(s, churned[rows], profile)
        if flags:
            for k, row_flags in zip(rows, score_flags(sub, connected, profile, wording),
                                    strict=True):
                raised[k] = row_flags

    prev = match_previous(frame, previous, rules.trend_days)
    missing_mask = configured & np.isnan(dims)
    names = np.array(SCORED_DIMENSIONS, dtype=object)
    out = pd.DataFrame({
        "account_id": frame["account_id"].astype(str).to_numpy(),
        "as_of": datetimes(frame["as_of"]).to_numpy(),
        "score": score,
        "grade": grade,
        "band": band,
        "colour": colour,
        "status": status,
        "trend": classify_trend(score, prev, rules.trend_dead_band),
        "previous_score": prev,
        **{col: dims[:, j] for j, col in enumerate(DIMENSION_COLUMNS)},
        "missing": _missing_lists(missing_mask, names),
        "coverage": coverage,
        "profile": np.array([p.name for p in profiles], dtype=object)[which],
        "config_version": rules.config_version,
        "flags": raised,
    })
    return out


def _missing_lists(mask: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """Per row, the names where its mask is set: built once per distinct mask (a batch has
    few), each row getting its own list."""
    if not len(mask):
        return []
    bits = mask.astype(np.int64) @ (np.int64(1) << np.arange(mask.shape[1], dtype=np.int64))
    _, first, which = np.unique(bits, return_index=True, return_inverse=True)
    patterns = [list(names[mask[i]]) for i in first]
    return [patterns[k].copy() for k in which.ravel()]
