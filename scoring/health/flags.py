"""Risk flags: specific, evidenced reasons to act, raised from features whatever the composite.

Owns the conditions (thresholds from the profile's `flags` section) and which numbers each flag
carries as evidence. The words (title, evidence sentence, action hint) come from wording.yaml.
Features of a source that is not connected never raise a flag. Vectorised per flag over a frame
for one profile; it does not compute scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scoring.health.normalise import feature_values
from scoring.health.profiles import FLAG_CODES, Profile
from scoring.health.wording import Wording, fill

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
DAYS_PER_MONTH = 365.25 / 12

# The numbers each flag shows as evidence (feature names), in display order.
EVIDENCE: dict[str, tuple[str, ...]] = {
    "usage_drop": ("logins_pct_change_30d", "events_pct_change_30d", "logins_30d", "events_30d"),
    "support_spike": ("tickets_30d", "tickets_pct_change_30d", "urgent_tickets_90d"),
    "nps_detractor": ("nps_last", "nps_avg_365d"),
    "payment_issue": ("failed_payments_90d", "overdue_invoices"),
    "renewal_soon": ("days_to_renewal", "contract_term_days", "auto_renew"),
    "no_exec_touch": ("days_since_last_exec_touch", "exec_touches_90d"),
    "escalation": ("escalations_90d", "open_tickets"),
}

Values = Callable[[str], np.ndarray]


def _conditions(profile: Profile, v: Values, connected: frozenset[str]) -> dict[str, np.ndarray]:
    """Boolean mask per flag code (NaN compares False, so missing data raises nothing)."""
    f = profile.flags
    with np.errstate(invalid="ignore"):
        drop = f.usage_drop.pct_change_below
        spike_pct = v("tickets_pct_change_30d")
        exec_days = v("days_since_last_exec_touch")
        tenure = v("tenure_days")
        never = (
            f.no_exec_touch.when_never
            & ("touchpoints" in connected)
            & np.isnan(exec_days)
            # A new account has had no time to meet an executive yet.
            & ~(tenure < f.no_exec_touch.days_at_least)
        )
        renewal = v("days_to_renewal")
        # Months as calendar months on average: 28-31 days round to 1, 181-184 to 6.
        term_months = np.round(v("contract_term_days") / DAYS_PER_MONTH)
        renews_by_itself = v("auto_renew") != 0  # NaN (unknown) is not "does not renew"
        return {
            "usage_drop": (v("logins_pct_change_30d") < drop) | (v("events_pct_change_30d") < drop),
            "support_spike": (v("tickets_30d") >= f.support_spike.tickets_30d_at_least)
            # No tickets in the 30 days before makes the change undefined: any burst is a spike.
            & ((spike_pct >= f.support_spike.pct_change_at_least) | np.isnan(spike_pct)),
            "nps_detractor": v("nps_last") <= f.nps_detractor.nps_at_most,
            "payment_issue": (v("failed_payments_90d") >= f.payment_issue.failed_payments_at_least)
            | (v("overdue_invoices") >= f.payment_issue.overdue_invoices_at_least),
            "renewal_soon": (renewal >= 0) & (renewal <= f.renewal_soon.days_at_most)
            & ((term_months >= f.renewal_soon.min_term_months) | ~renews_by_itself),
            "no_exec_touch": (exec_days >= f.no_exec_touch.days_at_least) | never,
            "escalation": v("escalations_90d") >= f.escalation.escalations_at_least,
        }


def _numbers(values: np.ndarray) -> list[float | None]:
    """Each value as a Python float, None for NaN (JSON-ready evidence)."""
    return [None if x != x else x for x in np.asarray(values, dtype=float).tolist()]


def score_flags(
    frame: pd.DataFrame, connected: frozenset[str], profile: Profile, wording: Wording
) -> list[list[dict[str, Any]]]:
    """Per row, the raised flags (most severe first), each a JSON-ready dict: code, severity,
    title, evidence (numbers), text (the evidence sentence) and hint."""
    cache: dict[str, np.ndarray] = {}

    def v(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = feature_values(frame, name, connected)
        return cache[name]

    masks = _conditions(profile, v, connected)
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(frame))]
    codes = sorted(FLAG_CODES, key=lambda c: SEVERITY_ORDER[getattr(profile.flags, c).severity])
    for code in codes:
        rule = getattr(profile.flags, code)
        if not rule.enabled:
            continue
        rows = np.flatnonzero(masks[code])
        if not len(rows):
            continue
        words = wording.flag(code)
        # Python floats (None for NaN) per column at once: per value, numpy scalars cost more
        # than the rest of a flag.
        columns = {name: _numbers(v(name)[rows]) for name in EVIDENCE[code]}
        for k, i in enumerate(rows.tolist()):
            evidence = {name: col[k] for name, col in columns.items()}
            template = words["evidence"]
            if code == "no_exec_touch" and evidence["days_since_last_exec_touch"] is None:
                template = words.get("evidence_never", template)
            out[i].append({
                "code": code,
                "severity": rule.severity,
                "title": words["title"],
                "evidence": evidence,
                "text": fill(template, **evidence),
                "hint": words["hint"],
            })
    return out
