"""The leakage guard: a single feature that predicts the label almost perfectly is suspicious.

Real churn is never that easy; a feature that alone ranks the label with ROC AUC above the
threshold (0.98 by default) is usually the label in disguise (a cancellation date, a status
updated after the event, months active up to churn). The guard warns and names it; it does not
drop anything, because the person who owns the data decides.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.evaluate import rank_auc

log = logging.getLogger(__name__)


def single_feature_auc(frame: pd.DataFrame, feature: str, label: str) -> float | None:
    """How well the feature alone ranks the label, in either direction (0.5..1).

    Numbers rank as they are (missing as its own lowest value); categories by their event rate.
    """
    y = frame[label].to_numpy(float)
    if not 0 < y.sum() < len(y):
        return None
    col = frame[feature]
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        keys = col.astype(object).where(col.notna(), "(missing)").astype(str)
        if keys.nunique() > max(50, len(keys) // 2):
            return None  # identifier-like: an event-rate encoding would be memorisation
        score = keys.map(pd.Series(y, index=keys.index).groupby(keys).mean()).to_numpy(float)
    else:
        score = col.to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(score).all() or np.nanstd(score) == 0:
            return None
        score = np.where(np.isnan(score), np.nanmin(score) - 1, score)
    auc = rank_auc(y, score)
    return max(auc, 1 - auc)


def leakage_suspects(frame: pd.DataFrame, features: Sequence[str], label: str,
                     threshold: float) -> list[dict[str, float | str]]:
    """Features whose single-feature ROC AUC exceeds the threshold, worst first."""
    rows = frame[frame[label].notna()]
    found = []
    for f in features:
        auc = single_feature_auc(rows, f, label)
        if auc is not None and auc > threshold:
            found.append({"feature": f, "roc_auc": auc})
            log.warning("possible leakage: %s alone predicts %s with ROC AUC %.3f", f, label, auc)
    return sorted(found, key=lambda x: -float(x["roc_auc"]))
