"""Product usage of the synthetic world: `usage_events` at the grain (account, user, day, event)
with a quantity, as a noisy view of the hidden health.

Every licensed seat is a user slot with its own propensity (power users, occasional users). On each
day a slot is active with a probability that rises with the account's health, falls at weekends and
holidays, ramps up during onboarding and drops after a usage cut; an active user touches one to
three product features, healthier accounts reaching further into the catalogue. Declared customer
event types (`features.synth.params.EventTypeEffect`) are account-level actions: on each day an
account is active, a Poisson count of each type at the account's own rate (one row, by its first
active user, with the count as its quantity), so events per active day show the propensity. It
must not decide anything about the account (churn, seats): it reads `features.synth.latent`'s
state. The loop runs over days; each day is vectorised over all user slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

from features.synth import params as P
from features.synth.accounts import Profiles
from features.synth.columns import id_labels, sigmoid, str_column, timestamps, work_seconds
from features.synth.latent import Latent

HEALTH_TO_ACTIVITY = 1.0
"""Log-odds of a user being active per unit of health."""
HEALTH_TO_BREADTH = 1.8
"""Extra product features reachable per unit of health."""
WEEKEND_LOGIT = -2.2
HOLIDAY_LOGIT = -0.8


def day_effects(start: date, days: int) -> np.ndarray:
    """Log-odds shift of activity for each day: weekends and the year-end holidays."""
    out = np.zeros(days)
    for d in range(days):
        day = start + timedelta(days=d)
        if day.weekday() >= 5:
            out[d] += WEEKEND_LOGIT
        if (day.month == 12 and day.day >= 22) or (day.month == 1 and day.day <= 2):
            out[d] += HOLIDAY_LOGIT
    return out


def build_usage(lat: Latent, p: Profiles, ids: np.ndarray, start: date,
                rng: np.random.Generator, progress: Callable[[float], None] | None = None,
                event_types: Sequence[P.EventTypeEffect] = (),
                propensity: np.ndarray | None = None) -> pd.DataFrame:
    """`propensity`: (days, types, accounts) hidden propensity of each account for each
    declared event type (see `EventTypeEffect`); draws for them happen only when types are
    declared, so a world without them is the same as ever."""
    days = lat.days
    n_events = len(P.EVENTS)
    names = P.EVENTS + tuple(t.name for t in event_types)
    if event_types and (propensity is None
                        or propensity.shape != (days, len(event_types), p.n)):
        raise ValueError("build_usage: one propensity per day, declared event type and account")
    base_rate = np.array([t.rate for t in event_types])[:, None]
    spread = np.array([t.spread for t in event_types])[:, None]
    # User slots: as many as the account ever has seats; slot rank < seats that day is licensed.
    max_seats = np.maximum(lat.seats.max(axis=0), 1).astype(np.int64)
    slot_acct = np.repeat(np.arange(p.n), max_seats).astype(np.int32)
    slot_rank = (np.arange(len(slot_acct)) - np.repeat(np.cumsum(max_seats) - max_seats,
                                                        max_seats)).astype(np.int32)
    # The first user is the admin and champion: the most active one.
    user_effect = 1.1 * rng.standard_normal(len(slot_acct)) + np.where(slot_rank == 0, 1.5, 0.0)
    account_logit = p.segment_values("user_logit") + p.usage_style
    utc_hour = np.asarray(P.REGION_UTC_HOUR)[p.region]
    alive = lat.alive()
    effects = day_effects(start, days)

    parts: list[tuple[np.ndarray, ...]] = []
    for d in range(days):
        if progress is not None and (d % 20 == 0 or d == days - 1):
            progress((d + 1) / days)
        x = np.nan_to_num(lat.health[d].astype(np.float64))
        licensed = alive[d][slot_acct] & (slot_rank < lat.seats[d][slot_acct])
        slot = np.flatnonzero(licensed)
        a = slot_acct[slot]
        factor = np.maximum(lat.usage_factor[d], 1e-6).astype(np.float64)
        logit_a = account_logit + HEALTH_TO_ACTIVITY * x + effects[d] + np.log(factor)
        active = rng.random(len(slot)) < sigmoid(logit_a[a] + user_effect[slot])
        slot, a = slot[active], a[active]
        m = len(slot)
        if m == 0:
            continue
        # Breadth of the catalogue the account reaches; an active user uses 1-3 features of it.
        reach = np.clip(np.round(p.breadth + HEALTH_TO_BREADTH * x + 3.0 * np.log(factor)),
                        2, n_events).astype(np.int64)[a]
        u = rng.random((4, m))
        extra = sigmoid(-0.6 + 0.4 * x[a] + 0.3 * user_effect[slot])
        k = 1 + (u[0] < extra) + (u[1] < 0.4 * extra)
        k = np.minimum(k, reach)
        first = np.floor(reach * u[2] ** 1.7).astype(np.int64)
        step = 1 + np.floor(u[3] * np.maximum(1, (reach - 1) // 2)).astype(np.int64)
        row = np.repeat(np.arange(m), k)
        j = np.arange(len(row)) - np.repeat(np.cumsum(k) - k, k)
        event = (first[row] + j * step[row]) % reach[row]
        lam = np.exp(0.5 + 0.25 * x[a] + 0.2 * user_effect[slot])
        quantity = 1 + rng.poisson(np.minimum(lam, 30.0)[row])
        seconds = work_seconds(rng, utc_hour[a][row])
        parts.append((slot[row], np.full(len(row), d, dtype=np.int32), event.astype(np.int8),
                      seconds.astype(np.int32), quantity.astype(np.float32)))
        if event_types:
            assert propensity is not None
            type_rate = base_rate * np.exp(spread * propensity[d])
            # Account-level actions: on a day the account is active, its first active user
            # does each type a Poisson number of times (one row, the count its quantity).
            accounts, first_row = np.unique(a, return_index=True)
            for k in range(len(type_rate)):
                count = rng.poisson(np.minimum(type_rate[k][accounts], 50.0))
                did = np.flatnonzero(count > 0)
                if len(did):
                    parts.append((slot[first_row[did]], np.full(len(did), d, dtype=np.int32),
                                  np.full(len(did), n_events + k, dtype=np.int8),
                                  work_seconds(rng, utc_hour[accounts[did]]).astype(np.int32),
                                  count[did].astype(np.float32)))

    if parts:
        slot, day, event, seconds, quantity = (np.concatenate(c) for c in zip(*parts, strict=True))
    else:
        slot, day, event, seconds, quantity = (np.zeros(0, dtype=np.int64),) * 5
    del parts
    # Built column by column, freeing each source array: this table dominates peak memory.
    columns = {"account_id": str_column(slot_acct[slot], ids),
               "user_id": str_column(slot, id_labels("U", len(slot_acct), 7))}
    del slot
    columns["ts"] = pd.Series(timestamps(start, day, seconds), copy=False)
    del day, seconds
    columns["event"] = str_column(event, names)
    columns["quantity"] = pd.Series(quantity.astype(np.float64), copy=False)
    return pd.DataFrame(columns, copy=False)
