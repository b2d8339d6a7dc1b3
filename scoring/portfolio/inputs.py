"""What the portfolio views read from a scored frame: one feature column, one model's
probability at its longest horizon, as float arrays aligned with the frame's rows.

Every view (value, RFM, lifecycle) reads the frame `scoring.pipeline.score_accounts` made, so a
class, a quintile and a stage rest on exactly the features and probabilities the score does.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from scoring.pipeline import ScoredFrame, longest_label

HORIZON = re.compile(r"_(\d+)d$")


def column(frame: ScoredFrame, name: str) -> np.ndarray:
    """The feature (or score column) `name` as floats, NaN where absent."""
    for source in (frame.features, frame.scores):
        if name in source.columns:
            return pd.to_numeric(source[name], errors="coerce").to_numpy(dtype=float)
    return np.full(len(frame), np.nan)


def text(frame: ScoredFrame, name: str) -> np.ndarray:
    """A text column of the scores (band, status), None where absent."""
    if name not in frame.scores.columns:
        return np.full(len(frame), None, dtype=object)
    return frame.scores[name].astype(object).where(frame.scores[name].notna(), None).to_numpy()


def probability(frame: ScoredFrame, target: str) -> tuple[np.ndarray, int | None]:
    """The probability of `target` (churn, expansion) at its longest horizon, and that horizon in
    days (None: no model, all NaN)."""
    label = longest_label(frame.probabilities.columns, target)
    if label is None:
        return np.full(len(frame), np.nan), None
    found = HORIZON.search(label)
    days = int(found.group(1)) if found else None
    return frame.probabilities[label].to_numpy(dtype=float), days


def money(value: float) -> str:
    return "unknown" if value != value else f"{value:,.0f}"


def pct(value: float) -> str:
    return "unknown" if value != value else f"{value:.0%}"
