"""What a world's usage table reveals of the event types' intent: the posterior of each
account's decision intent given the event counts it has emitted so far.

The intent a churn decision weighs (`generate.recent_intent`) is an average of a hidden AR(1)
propensity, and the data shows the propensity only through Poisson counts on the account's
active days. A filter over those counts (the propensity and its average as a two-dimensional
linear-Gaussian state, each day's count folded in by a Laplace step of its Poisson likelihood)
gives, day by day, the mean and variance of the average given the counts up to and including
that day. That is what `generate.oracle_probability` weighs instead of the hidden intent, so the
oracle is the best forecast the data allows, not one that knows the latent path.

Inputs are read from the usage table as any consumer would (an account is active on a day it
has any usage row; a type's count is its summed quantity), so the estimate uses nothing a model
of the data could not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from features.synth import params as P


def observed_counts(usage: pd.DataFrame, event_types: Sequence[P.EventTypeEffect],
                    ids: np.ndarray, start: date, days: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, active) from the usage table: counts (days, types, accounts) each type's summed
    quantity per day, active (days, accounts) the account has any usage row that day."""
    n = len(ids)
    code = pd.Index(ids).get_indexer(usage["account_id"])
    day = ((pd.to_datetime(usage["ts"]).dt.normalize() - pd.Timestamp(start))
           // pd.Timedelta(days=1)).to_numpy(np.int64)
    ok = (code >= 0) & (day >= 0) & (day < days)
    active = np.zeros((days, n), dtype=bool)
    active[day[ok], code[ok]] = True
    counts = np.zeros((days, len(event_types), n))
    kind = pd.Index([t.name for t in event_types]).get_indexer(usage["event"])
    typed = ok & (kind >= 0)
    np.add.at(counts, (day[typed], kind[typed], code[typed]),
              usage["quantity"].to_numpy(np.float64)[typed])
    return counts, active


def filtered_intent(counts: np.ndarray, active: np.ndarray,
                    event_types: Sequence[P.EventTypeEffect],
                    start_mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, var), each (days, types, accounts): the posterior of each type's decision intent
    (the `EVENT_INTENT_MEMORY`-day average of its propensity) given the counts of days up to and
    including each day.

    The propensity x is stationary N(0, 1), x' = phi x + sqrt(1 - phi^2) e; the average
    m' = k m + (1 - k) x'. A day's count is Poisson(rate * exp(spread * x)) on an active day
    and carries nothing on another. The count is folded in by one Newton step of its
    log-likelihood at the predicted mean (an extended Kalman update): at dozens of events a
    month the posterior is close to Gaussian and the step close to exact."""
    days, k_types, n = counts.shape
    mean = np.zeros((days, k_types, n))
    var = np.zeros((days, k_types, n))
    if not k_types or not days:
        return mean, var
    keep = np.exp(-1.0 / P.EVENT_INTENT_MEMORY) if P.EVENT_INTENT_MEMORY else 0.0
    phi = np.array([np.exp(-1.0 / t.timescale) if t.timescale else 1.0 for t in event_types])
    rate = np.array([t.rate for t in event_types])[:, None]
    spread = np.array([t.spread for t in event_types])[:, None]
    q = (1.0 - phi**2)[:, None]
    phi = phi[:, None]
    # State (x, m): means and the three entries of the covariance, per type and account.
    mx = np.zeros((k_types, n)) if start_mean is None else start_mean.copy()
    mm = mx.copy()
    pxx = np.ones((k_types, n))
    pxm = np.ones((k_types, n))
    pmm = np.ones((k_types, n))
    for d in range(days):
        if d:
            # Predict: x' = phi x + w, m' = keep m + (1 - keep) x'.
            nxx = phi**2 * pxx + q
            nxm = keep * phi * pxm + (1.0 - keep) * nxx
            nmm = (keep**2 * pmm + 2.0 * keep * (1.0 - keep) * phi * pxm
                   + (1.0 - keep) ** 2 * nxx)
            mx = phi * mx
            mm = keep * mm + (1.0 - keep) * mx
            pxx, pxm, pmm = nxx, nxm, nmm
        on = active[d][None, :]
        lam = rate * np.exp(spread * mx)
        grad = np.where(on, spread * (counts[d] - lam), 0.0)
        info = np.where(on, spread**2 * lam, 0.0)
        # Gaussian update with a scalar observation of x of precision `info`.
        denom = 1.0 + info * pxx
        gain_x, gain_m = pxx / denom, pxm / denom
        mx = mx + gain_x * grad
        mm = mm + gain_m * grad
        pmm = pmm - info * pxm * pxm / denom
        pxm = pxm - info * pxx * pxm / denom
        pxx = pxx / denom
        mean[d], var[d] = mm, pmm
    return mean, var
