"""Feature normalisation: one registered feature's raw values to 0-100 scores.

Owns the piecewise-linear map (linear between the profile's points, clamped outside them, NaN
stays NaN so a missing value is never a score) and the rule that features of a source that is not
connected are missing whatever the frame holds. It does not weight or combine features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.registry import FEATURES_BY_NAME
from scoring.health.profiles import Normalisation


def score_values(values: np.ndarray, norm: Normalisation, higher_is_healthier: bool) -> np.ndarray:
    """Scores 0-100 for raw values; NaN where the value is NaN."""
    xs, ys = norm.curve(higher_is_healthier)
    return np.interp(np.asarray(values, dtype=float), xs, ys)


def feature_values(frame: pd.DataFrame, name: str, connected: frozenset[str]) -> np.ndarray:
    """A feature column as float, all NaN when its source table is not connected."""
    if name not in frame.columns:
        raise KeyError(
            f"the features frame has no column {name!r}, which the rules score; build features "
            "with features.build.build_features (every registered feature is a column)"
        )
    spec = FEATURES_BY_NAME[name]
    if spec.source not in connected:
        return np.full(len(frame), np.nan)
    col = frame[name]
    if col.dtype == np.float64:
        # What build_features gives: already the values (a copy, so callers may write to it);
        # to_numeric's checks cost more than a one-row frame's arithmetic.
        return col.to_numpy(dtype=float, copy=True)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def score_feature(
    frame: pd.DataFrame, name: str, norm: Normalisation, connected: frozenset[str]
) -> np.ndarray:
    spec = FEATURES_BY_NAME[name]
    return score_values(feature_values(frame, name, connected), norm,
                        bool(spec.higher_is_healthier))
