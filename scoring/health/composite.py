"""The composite score and what people read from it: grade, colour, band and status.

The composite is the weighted mean of the dimensions that have data; weights are normalised
automatically, so a missing dimension's weight is redistributed over the others, and `coverage`
(0-1) says what share of the configured weight had data. Grades, colours, bands and statuses are
read from the score rounded to a whole number, the number people see. Pure and vectorised; it
does not score features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.health.profiles import Profile


def score_composite(
    dims: pd.DataFrame, weights: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(score, coverage) per row. Score NaN only when no weighted dimension has data."""
    n = len(dims)
    num = np.zeros(n)
    den = np.zeros(n)
    total = 0.0
    for dim in dims.columns:
        w = float(weights.get(dim, 0.0))
        if w <= 0:
            continue
        total += w
        s = dims[dim].to_numpy(dtype=float)
        have = ~np.isnan(s)
        num += np.where(have, s * w, 0.0)
        den += have * w
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    coverage = den / total if total > 0 else np.zeros(n)
    # Guard against float drift past the ends of the scale.
    return np.clip(score, 0.0, 100.0), coverage


def displayed(score: np.ndarray) -> np.ndarray:
    """The whole number people see: round half up (80.5 shows as 81)."""
    return np.floor(np.asarray(score, dtype=float) + 0.5)


def _pick(score: np.ndarray, mins: list[float], labels: list[str]) -> np.ndarray:
    """Label of the first cut (best to worst) whose min the rounded score reaches."""
    shown = displayed(score)
    out = np.full(len(shown), None, dtype=object)
    todo = ~np.isnan(shown)
    for lo, label in zip(mins, labels, strict=True):
        hit = todo & (shown >= lo)
        out[hit] = label
        todo &= ~hit
    return out


def grade(score: np.ndarray, profile: Profile) -> np.ndarray:
    return _pick(score, [g.min for g in profile.grades], [g.grade for g in profile.grades])


def colour(score: np.ndarray, profile: Profile) -> np.ndarray:
    return _pick(score, [c.min for c in profile.colours], [c.colour for c in profile.colours])


def band(score: np.ndarray, profile: Profile) -> np.ndarray:
    ordered = sorted(profile.bands, key=lambda b: -b.min)
    return _pick(score, [b.min for b in ordered], [b.name for b in ordered])


def status(score: np.ndarray, churned: np.ndarray, profile: Profile) -> np.ndarray:
    """healthy / at-risk / critical from the score; churned wins; None when unscored."""
    cuts = profile.status
    out = _pick(score, [cuts.healthy_min, cuts.at_risk_min, 0.0],
                ["healthy", "at-risk", "critical"])
    out[np.asarray(churned, dtype=bool)] = "churned"
    return out
