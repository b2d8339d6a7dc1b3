"""Lifecycle stages and the changes between them (the account's journey).

An account's stage as of a date, from its tenure, its usage trend (product events, 30 days
against the 30 before), its renewal date and its health band, the first rule that holds
winning (thresholds in `portfolio.lifecycle`):

1. Onboarding: a tenure below `onboarding_days` (a new customer is onboarding whatever its
   early score says: the ramp-up is expected);
2. At-Risk: a band in `at_risk_bands`, a status in `at_risk_statuses`, or usage down at least
   `at_risk_usage_pct`;
3. Renewal: a contract of at least `renewal_min_term_days` ending within `renewal_days`;
4. Growth: usage up at least `growth_usage_pct`, or a tenure below `growth_tenure_days`;
5. Mature: none of these.

Each stage comes with its cause in plain language; `stage_changes` compares the stages with the
last recorded ones and returns the journey's new entries. Pure: the store and the events are the
caller's (serving.portfolio).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scoring.pipeline import ScoredFrame
from scoring.portfolio.inputs import column, text
from scoring.portfolio.settings import LifecycleConfig

ONBOARDING, GROWTH, MATURE, AT_RISK, RENEWAL = "Onboarding", "Growth", "Mature", "At-Risk", \
    "Renewal"
STAGES = (ONBOARDING, GROWTH, MATURE, AT_RISK, RENEWAL)
STAGE_COLUMNS = ("account_id", "name", "stage", "cause", "tenure_days", "usage_pct_change",
                 "days_to_renewal", "band")
CHANGE_COLUMNS = ("account_id", "from_stage", "to_stage", "cause")


def lifecycle_stages(frame: ScoredFrame, cfg: LifecycleConfig) -> pd.DataFrame:
    """Every account's stage and its cause as of the frame's date."""
    tenure = column(frame, "tenure_days")
    usage = column(frame, "events_pct_change_30d")
    renewal = column(frame, "days_to_renewal")
    term = column(frame, "contract_term_days")
    band, status = text(frame, "band"), text(frame, "status")
    names = frame.scores["name"].to_numpy() if "name" in frame.scores.columns \
        else np.full(len(frame), None, dtype=object)
    stages, causes = [], []
    for i in range(len(frame)):
        stage, cause = stage_of(tenure[i], usage[i], renewal[i], term[i], band[i], status[i],
                                cfg)
        stages.append(stage)
        causes.append(cause)
    return pd.DataFrame({"account_id": frame.account_ids, "name": names, "stage": stages,
                         "cause": causes, "tenure_days": tenure, "usage_pct_change": usage,
                         "days_to_renewal": renewal, "band": band}, columns=list(STAGE_COLUMNS))


def stage_of(tenure: float, usage_pct: float, days_to_renewal: float, term_days: float,
             band: str | None, status: str | None, cfg: LifecycleConfig) -> tuple[str, str]:
    """One account's (stage, cause)."""
    if tenure == tenure and tenure < cfg.onboarding_days:
        return ONBOARDING, (f"a customer for {tenure:.0f} days, under the "
                            f"{cfg.onboarding_days:g}-day onboarding period")
    risk = []
    if band is not None and band in cfg.at_risk_bands:
        risk.append(f"health band {band}")
    if status is not None and status in cfg.at_risk_statuses:
        risk.append(f"health status {status}")
    if usage_pct == usage_pct and usage_pct <= cfg.at_risk_usage_pct:
        risk.append(f"product events down {-usage_pct:.0f}% over the last 30 days "
                    f"({-cfg.at_risk_usage_pct:g}% or more is a risk)")
    if risk:
        return AT_RISK, "; ".join(risk)
    if days_to_renewal == days_to_renewal and days_to_renewal <= cfg.renewal_days \
            and term_days == term_days and term_days >= cfg.renewal_min_term_days:
        return RENEWAL, (f"the {term_days:.0f}-day contract ends in {days_to_renewal:.0f} "
                         f"days (within the {cfg.renewal_days:g}-day renewal window)")
    if usage_pct == usage_pct and usage_pct >= cfg.growth_usage_pct:
        return GROWTH, (f"product events up {usage_pct:.0f}% over the last 30 days "
                        f"({cfg.growth_usage_pct:g}% or more is growth)")
    if tenure == tenure and tenure < cfg.growth_tenure_days:
        return GROWTH, (f"a customer for {tenure:.0f} days: past onboarding, under the "
                        f"{cfg.growth_tenure_days:g} days after which it is mature")
    told = "unknown tenure" if tenure != tenure else f"a customer for {tenure:.0f} days"
    return MATURE, f"{told}, steady usage, healthy and no renewal within " \
                   f"{cfg.renewal_days:g} days"


def stage_changes(stages: pd.DataFrame, last: Mapping[str, str]) -> pd.DataFrame:
    """The journey's new entries: each account whose stage differs from its last recorded one
    (`last`: account -> stage), or that has none yet (from_stage None)."""
    prev = np.array([last.get(a) for a in stages["account_id"]], dtype=object)
    moved = prev != stages["stage"].to_numpy(dtype=object)
    out = pd.DataFrame({"account_id": stages["account_id"].to_numpy()[moved],
                        # object, not text: a first entry's from_stage stays None, not NaN
                        "from_stage": pd.Series(prev[moved], dtype=object),
                        "to_stage": stages["stage"].to_numpy()[moved],
                        "cause": stages["cause"].to_numpy()[moved]},
                       columns=list(CHANGE_COLUMNS))
    return out.reset_index(drop=True)
