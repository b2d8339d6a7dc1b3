"""Dimension scores: engagement, adoption, usage, support, satisfaction, value, relationship.

A dimension is the weighted mean of the 0-100 scores of its features that have data (weights from
the profile). With no data at all - its source not connected, or every feature NaN in the window -
it is NaN (missing): never 0 or 50. Vectorised over a frame for one profile; resolving profiles
and combining dimensions live elsewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.health.normalise import score_feature
from scoring.health.profiles import Profile


def score_features(
    frame: pd.DataFrame, connected: frozenset[str], profile: Profile
) -> dict[str, dict[str, np.ndarray]]:
    """Per dimension, per feature: 0-100 scores (NaN when missing)."""
    return {
        dim: {name: score_feature(frame, name, norm, connected)
              for name, norm in profile.normalisations[dim].items()}  # type: ignore[index]
        for dim in profile.dimensions
    }


def combine_features(
    scores: dict[str, np.ndarray], weights: dict[str, float], n: int
) -> np.ndarray:
    """Weighted mean over the features that have a score; NaN when none has."""
    num = np.zeros(n)
    den = np.zeros(n)
    for name, s in scores.items():
        have = ~np.isnan(s)
        w = weights[name]
        num += np.where(have, s * w, 0.0)
        den += have * w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def score_dimensions(
    frame: pd.DataFrame, connected: frozenset[str], profile: Profile
) -> pd.DataFrame:
    """One column per dimension the profile scores, same index as `frame`."""
    per_feature = score_features(frame, connected, profile)
    out = {
        dim: combine_features(
            feats,
            {name: norm.weight for name, norm in
             profile.normalisations[dim].items()},  # type: ignore[index]
            len(frame),
        )
        for dim, feats in per_feature.items()
    }
    return pd.DataFrame(out, index=frame.index)
