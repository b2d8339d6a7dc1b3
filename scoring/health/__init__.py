"""The rules-based health score: pure functions from a features frame to scores with reasons.

Public API (others call these names): `load_rules`, `score_frame`, `health_summary`, `Rules`.
Training uses `score` as the baseline a model must beat; the one scoring pipeline
(`scoring.pipeline`) calls the same `score_frame`. Nothing here imports BentoML, a store or a
warehouse at import time.
"""

from __future__ import annotations

from scoring.health.profiles import Rules, RulesError, load_rules, load_rules_for
from scoring.health.scoring import DIMENSION_COLUMNS, SCORE_COLUMNS, score_frame
from scoring.health.summary import health_summary

__all__ = [
    "DIMENSION_COLUMNS",
    "SCORE_COLUMNS",
    "Rules",
    "RulesError",
    "health_summary",
    "load_rules",
    "load_rules_for",
    "score_frame",
]
