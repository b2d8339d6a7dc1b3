"""Trend: improving, stable or declining against the score N days earlier.

Owns matching a frame of previous scores to the current rows and the dead-band rule. Previous
scores come either from the store or from recomputing the score on features as of T-N with the
same pure function (`scoring.pipeline.score_accounts` does both); this module does not care
which, so both paths give the same trend. Pure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRENDS = ("improving", "stable", "declining")


def match_previous(frame: pd.DataFrame, previous: pd.DataFrame | None, days: int) -> np.ndarray:
    """The previous score for each row of `frame` (NaN when there is none).

    `previous` has `account_id` and `score`; when it also has `as_of`, a row matches the previous
    score dated exactly `days` before its own as_of (so many as-of dates can be scored at once),
    else it matches on account_id alone.
    """
    n = len(frame)
    if previous is None or previous.empty:
        return np.full(n, np.nan)
    for col in ("account_id", "score"):
        if col not in previous.columns:
            raise ValueError(f"previous scores need columns account_id and score; {col!r} is "
                             "missing")
    left = pd.DataFrame({"account_id": frame["account_id"].astype(str).to_numpy()})
    prev = previous.assign(account_id=previous["account_id"].astype(str))
    keys = ["account_id"]
    if "as_of" in prev.columns:
        left["as_of"] = pd.to_datetime(frame["as_of"]).dt.normalize().to_numpy()
        prev = prev.assign(as_of=pd.to_datetime(prev["as_of"]).dt.normalize()
                           + pd.Timedelta(days=days))
        keys.append("as_of")
    prev = prev.drop_duplicates(keys, keep="last")[[*keys, "score"]]
    merged = left.merge(prev, on=keys, how="left", validate="many_to_one")
    return merged["score"].to_numpy(dtype=float)


def classify_trend(score: np.ndarray, previous: np.ndarray, dead_band: float) -> np.ndarray:
    """improving / stable / declining; None where either score is missing."""
    delta = np.asarray(score, dtype=float) - np.asarray(previous, dtype=float)
    out = np.full(len(delta), None, dtype=object)
    known = ~np.isnan(delta)
    out[known & (delta > dead_band)] = "improving"
    out[known & (delta < -dead_band)] = "declining"
    out[known & (np.abs(delta) <= dead_band)] = "stable"
    return out
