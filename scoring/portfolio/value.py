"""Customer value: a 0-100 value score, its tier and the health-segment class, each with the
plain-language reason it was given.

The value score weighs three things the account is worth beyond its health (weights in
`portfolio.value`): contract size (the ARR as its percentile rank in the portfolio, so one
outsized contract does not flatten every other), growth potential (the expansion probability at
the longest horizon) and reference value (a promoter NPS; advocacy touchpoints where the data
has them). A part without data is left out and the others carry its weight, and the reason
says so. Tiers cut the score: Strategic, High Value, Standard.

The health-segment class says where the account stands, value and health together: Dormant (no
activity), At Risk (a weak health status or a high churn probability), Strategic and High Value
(by tier, when neither of those applies), Growing (usage or expansion momentum). Every class an
account qualifies for is listed with its reason; the first in that order is its segment, and an
account none applies to is Standard. Pure: a frame in, a frame out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scoring.pipeline import ScoredFrame
from scoring.portfolio.inputs import column, money, pct, probability, text
from scoring.portfolio.settings import PortfolioConfig, SegmentConfig, ValueConfig

STRATEGIC, HIGH_VALUE, STANDARD = "Strategic", "High Value", "Standard"
TIERS = (STRATEGIC, HIGH_VALUE, STANDARD)
DORMANT, AT_RISK, GROWING = "Dormant", "At Risk", "Growing"
CLASSES = (DORMANT, AT_RISK, STRATEGIC, HIGH_VALUE, GROWING)
"""Health-segment classes in precedence order: the first an account qualifies for is its
segment."""

VALUE_COLUMNS = ("account_id", "name", "arr", "arr_percentile", "expansion_probability", "nps",
                 "advocacy", "value_score", "tier", "tier_reason", "segment", "segment_reason",
                 "classes")


def reference_parts(nps: np.ndarray, advocacy: np.ndarray, cfg: ValueConfig) -> np.ndarray:
    """Reference value 0-1: promoter 1, passive 0.5, detractor 0, averaged with advocacy
    (touchpoints over `advocacy_full_at`, capped at 1) where both are known."""
    from_nps = np.where(np.isnan(nps), np.nan,
                        np.where(nps >= cfg.promoter_nps, 1.0,
                                 np.where(nps >= cfg.passive_nps, 0.5, 0.0)))
    from_advocacy = np.clip(advocacy / cfg.advocacy_full_at, 0.0, 1.0)
    stacked = np.vstack([from_nps, from_advocacy])
    known = ~np.isnan(stacked)
    total = np.where(known, stacked, 0.0).sum(axis=0)
    count = known.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def value_scores(frame: ScoredFrame, cfg: PortfolioConfig) -> pd.DataFrame:
    """Value score, tier and health-segment class of every account of `frame` (pass the
    active accounts: percentiles are of the accounts given)."""
    v = cfg.value
    arr = column(frame, "arr")
    arr_pct = pd.Series(arr).rank(pct=True, method="max").to_numpy(dtype=float)
    expansion, horizon = probability(frame, "expansion")
    nps = column(frame, "nps_last")
    advocacy = column(frame, v.advocacy_column) if v.advocacy_column else \
        np.full(len(frame), np.nan)
    reference = reference_parts(nps, advocacy, v)
    parts = np.vstack([arr_pct, expansion, reference])
    weights = np.array([v.arr_weight, v.growth_weight, v.reference_weight])[:, None]
    known = ~np.isnan(parts)
    weight = np.where(known, weights, 0.0).sum(axis=0)
    score = np.where(weight > 0, 100.0 * np.where(known, parts * weights, 0.0).sum(axis=0)
                     / np.where(weight > 0, weight, 1.0), np.nan)
    tier = np.where(score >= v.strategic_min, STRATEGIC,
                    np.where(score >= v.high_value_min, HIGH_VALUE, STANDARD)).astype(object)

    churn, churn_days = probability(frame, "churn")
    status, score_health = text(frame, "status"), column(frame, "score")
    idle, events_pct = column(frame, "days_since_last_activity"), \
        column(frame, "events_pct_change_30d")
    names = frame.scores["name"].to_numpy() if "name" in frame.scores.columns \
        else np.full(len(frame), None, dtype=object)
    rows: list[dict[str, Any]] = []
    for i, account in enumerate(frame.account_ids):
        tier_reason = _tier_reason(tier[i], score[i], arr[i], arr_pct[i], expansion[i], horizon,
                                   nps[i], advocacy[i], v)
        classes = _classes(tier[i], tier_reason, idle[i], status[i], score_health[i], churn[i],
                           churn_days, events_pct[i], expansion[i], horizon, cfg.segments)
        first = classes[0] if classes else {
            "class": STANDARD,
            "reason": "none of Dormant, At Risk, Strategic, High Value or Growing applies: "
                      "active, healthy enough, a Standard value tier and no growth signal"}
        rows.append({"account_id": account, "name": names[i], "arr": arr[i],
                     "arr_percentile": arr_pct[i], "expansion_probability": expansion[i],
                     "nps": nps[i], "advocacy": advocacy[i], "value_score": score[i],
                     "tier": tier[i], "tier_reason": tier_reason, "segment": first["class"],
                     "segment_reason": first["reason"], "classes": classes})
    return pd.DataFrame(rows, columns=list(VALUE_COLUMNS))


def _tier_reason(tier: str, score: float, arr: float, arr_pct: float, expansion: float,
                 horizon: int | None, nps: float, advocacy: float, v: ValueConfig) -> str:
    if score != score:
        return f"{STANDARD}: no ARR, expansion probability or NPS to value the account on"
    if tier == STRATEGIC:
        cut = f"value score {score:.0f} is at least {v.strategic_min:g}"
    elif tier == HIGH_VALUE:
        cut = f"value score {score:.0f} is at least {v.high_value_min:g} and below " \
              f"{v.strategic_min:g}"
    else:
        cut = f"value score {score:.0f} is below {v.high_value_min:g}"
    parts = [f"ARR {money(arr)}" + ("" if arr != arr else
                                    f", at or above {arr_pct:.0%} of the portfolio's contracts")]
    if expansion == expansion:
        parts.append(f"expansion probability {pct(expansion)} within {horizon} days")
    else:
        parts.append("no expansion probability (no model), so growth potential is left out")
    if nps != nps:
        parts.append("no NPS response")
    elif nps >= v.promoter_nps:
        parts.append(f"a promoter (NPS {nps:.0f})")
    elif nps >= v.passive_nps:
        parts.append(f"a passive (NPS {nps:.0f})")
    else:
        parts.append(f"a detractor (NPS {nps:.0f})")
    if advocacy == advocacy:
        parts.append(f"{advocacy:.0f} advocacy touchpoints")
    return f"{tier}: {cut} ({'; '.join(parts)})"


def _classes(tier: str, tier_reason: str, idle: float, status: Any, health: float,
             churn: float, churn_days: int | None, events_pct: float, expansion: float,
             horizon: int | None, s: SegmentConfig) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if idle != idle:
        out.append({"class": DORMANT, "reason": "no product activity on record"})
    elif idle >= s.dormant_days:
        out.append({"class": DORMANT, "reason": f"no product activity for {idle:.0f} days "
                    f"({s.dormant_days:g} or more is dormant)"})
    risk = []
    if status in s.at_risk_statuses:
        risk.append(f"health status {status} (score {health:.0f})")
    if churn == churn and churn >= s.at_risk_churn:
        risk.append(f"churn probability {pct(churn)} within {churn_days} days is at least "
                    f"{pct(s.at_risk_churn)}")
    if risk:
        out.append({"class": AT_RISK, "reason": "; ".join(risk)})
    if tier in (STRATEGIC, HIGH_VALUE):
        out.append({"class": tier, "reason": f"value tier {tier_reason}"})
    growth = []
    if events_pct == events_pct and events_pct >= s.growing_usage_pct:
        growth.append(f"product events up {events_pct:.0f}% over the last 30 days "
                      f"({s.growing_usage_pct:g}% or more is growing)")
    if expansion == expansion and expansion >= s.growing_expansion:
        growth.append(f"expansion probability {pct(expansion)} within {horizon} days is at "
                      f"least {pct(s.growing_expansion)}")
    if growth:
        out.append({"class": GROWING, "reason": "; ".join(growth)})
    return out
