"""Hand-made feature rows for tests, benches and docs: a healthy and an at-risk account, and a
random frame with the registry's columns.

Owns nothing the scoring depends on; it only produces frames shaped like
`features.build.build_features` output (account_id, as_of, every registered feature in order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.registry import FEATURES

HEALTHY: dict[str, Any] = {
    "active_users_7d": 30, "active_users_30d": 40, "active_users_90d": 45,
    "active_user_ratio_30d": 0.8, "logins_30d": 600, "logins_pct_change_30d": 5.0,
    "active_days_30d": 28, "days_since_last_activity": 1,
    "events_7d": 900, "events_30d": 3600, "events_90d": 10000, "events_per_seat_30d": 72,
    "events_pct_change_30d": 4.0,
    "features_used_30d": 9, "features_used_90d": 11, "features_used_change_30d": 1,
    "tickets_30d": 1, "tickets_90d": 2, "tickets_pct_change_30d": 0.0, "urgent_tickets_90d": 0,
    "escalations_90d": 0, "reopened_tickets_90d": 0, "open_tickets": 0,
    "median_resolution_hours_90d": 6, "ticket_csat_90d": 4.7, "ticket_sentiment_90d": 0.5,
    "days_since_last_ticket": 20,
    "nps_last": 9, "nps_avg_365d": 9, "csat_avg_90d": 4.6, "survey_responses_90d": 2,
    "days_since_last_survey": 40,
    "arr": 60000, "arr_pct_change_90d": 10.0, "subscription_seats": 50, "days_to_renewal": 200,
    "contract_term_days": 365, "auto_renew": 1, "failed_payments_90d": 0, "overdue_invoices": 0,
    "touchpoints_30d": 3, "touchpoints_90d": 8, "exec_touches_90d": 2,
    "days_since_last_exec_touch": 20, "days_since_last_touch": 5, "response_rate_90d": 0.9,
    "tenure_days": 800, "seats": 50, "segment": "mid-market", "industry": "software",
    "region": "emea", "plan": "pro",
}

AT_RISK: dict[str, Any] = HEALTHY | {
    "active_users_7d": 2, "active_users_30d": 5, "active_users_90d": 20,
    "active_user_ratio_30d": 0.1, "logins_30d": 40, "logins_pct_change_30d": -60.0,
    "active_days_30d": 6, "days_since_last_activity": 12,
    "events_7d": 20, "events_30d": 150, "events_90d": 2500, "events_per_seat_30d": 3,
    "events_pct_change_30d": -55.0,
    "features_used_30d": 2, "features_used_change_30d": -3,
    "tickets_30d": 6, "tickets_90d": 9, "tickets_pct_change_30d": 200.0, "urgent_tickets_90d": 4,
    "escalations_90d": 2, "reopened_tickets_90d": 2, "open_tickets": 4,
    "ticket_csat_90d": 2.1, "ticket_sentiment_90d": -0.5,
    "nps_last": 3, "nps_avg_365d": 5, "csat_avg_90d": 2.5,
    "arr_pct_change_90d": -20.0, "days_to_renewal": 45, "auto_renew": 0,
    "failed_payments_90d": 1, "overdue_invoices": 1,
    "touchpoints_30d": 0, "touchpoints_90d": 1, "exec_touches_90d": 0,
    "days_since_last_exec_touch": 200, "days_since_last_touch": 70, "response_rate_90d": 0.2,
}


def feature_frame(rows: list[dict[str, Any]], as_of: str = "2025-06-01") -> pd.DataFrame:
    """A frame shaped like build_features output from row dicts (absent features are NaN)."""
    data: dict[str, Any] = {
        "account_id": [str(r.get("account_id", f"acc-{i}")) for i, r in enumerate(rows)],
        "as_of": pd.to_datetime([r.get("as_of", as_of) for r in rows]),
    }
    for spec in FEATURES:
        values = [r.get(spec.name, np.nan) for r in rows]
        if spec.dtype == "category":
            data[spec.name] = pd.Categorical([None if pd.isna(v) else v for v in values])
        else:
            data[spec.name] = np.asarray(values, dtype=float)
    return pd.DataFrame(data)


def random_features(n: int, seed: int = 0) -> pd.DataFrame:
    """n random rows between the at-risk and healthy examples, with some values missing."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, size=n)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"account_id": f"acc-{i:06d}"}
        for spec in FEATURES:
            lo, hi = AT_RISK[spec.name], HEALTHY[spec.name]
            if spec.dtype == "category":
                row[spec.name] = rng.choice(["enterprise", "mid-market", "smb"]) \
                    if spec.name == "segment" else hi
            elif rng.uniform() < 0.1:
                row[spec.name] = np.nan
            else:
                row[spec.name] = lo + (hi - lo) * t[i] + rng.normal(0, 0.1) * (abs(hi - lo) + 1)
        rows.append(row)
    return feature_frame(rows)
