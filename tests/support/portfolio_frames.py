"""Scored frames made by hand for the portfolio tests: feature rows through the rules score
(`score_frame`), shaped like `score_accounts` output, with chosen probabilities."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.contract.tables import TABLES
from scoring.health import load_rules, score_frame
from scoring.health.examples import HEALTHY, feature_frame
from scoring.pipeline import ScoredFrame

ALL = frozenset(t.name for t in TABLES)
AS_OF = date(2025, 6, 1)


def scored(rows: list[dict[str, Any]], probabilities: dict[str, list[float]] | None = None,
           as_of: date = AS_OF) -> ScoredFrame:
    """Each row: HEALTHY's features overridden by the row's (plus `account_id`, optional
    `status` forcing the health status)."""
    full = [{**HEALTHY, "account_id": f"A{i:05d}", **r} for i, r in enumerate(rows)]
    feats = feature_frame(full, as_of=str(as_of))
    scores = score_frame(feats, ALL, load_rules())
    for i, r in enumerate(full):
        for col in ("status", "band"):
            if col in r:
                scores.loc[i, col] = r[col]
    scores["account_status"] = "active"
    scores["name"] = [f"Customer {r['account_id']}" for r in full]
    scores["created_at"] = pd.Timestamp("2023-01-01")
    scores["churned_at"] = pd.NaT
    scores["probabilities_note"] = None
    probs = pd.DataFrame({k: np.asarray(v, dtype=float)
                          for k, v in (probabilities or {}).items()}, index=range(len(full)))
    return ScoredFrame(as_of, ALL, scores.reset_index(drop=True), feats, probs)
