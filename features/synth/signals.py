"""The voice-of-customer tables of the synthetic world: tickets, surveys and touchpoints, each a
noisy view of the hidden health.

Unhealthy accounts open more tickets, more urgent and more often escalated, with worse sentiment and
CSAT; outages bring bursts of urgent tickets. NPS waves come about quarterly and unhealthy accounts
answer less and lower. CSMs touch their accounts by segment and tier; customers respond less when
unhealthy or when their champion has left, and QBRs get skipped. Nothing here changes the account's
fate: it only reads `features.synth.latent`'s state. Whole-period draws are vectorised over the
(day, account) grid.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from features.synth import params as P
from features.synth.accounts import Profiles
from features.synth.columns import (
    id_labels,
    nullable_timestamps,
    sigmoid,
    str_column,
    timestamps,
    work_seconds,
)
from features.synth.latent import Latent

TOUCH_KINDS = ("meeting", "qbr", "call", "email")
TIER_TOUCH_FACTOR = (1.5, 1.0, 0.0)
# Mix of meeting, call, email per segment (QBRs are scheduled separately).
TOUCH_MIX = ((0.35, 0.25, 0.40), (0.2, 0.3, 0.5), (0.1, 0.2, 0.7))


def _grid_counts(rate: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(day, account) of each event when counts per cell are Poisson(rate), day-major order."""
    counts = rng.poisson(rate)
    d, a = np.nonzero(counts)
    reps = counts[d, a]
    return np.repeat(d, reps), np.repeat(a, reps)


def _health(lat: Latent, d: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(lat.health[d, a].astype(np.float64))


def build_tickets(lat: Latent, p: Profiles, ids: np.ndarray, start: date,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The tickets table, and for the CSAT surveys each rated ticket's account and resolution."""
    alive = lat.alive()
    median = p.segment_values("seats_median")
    scale = (np.maximum(lat.seats, 1) / median[None, :]) ** 0.2
    x_grid = np.nan_to_num(lat.health.astype(np.float64))
    rate = (p.segment_values("ticket_rate")[None, :] * scale * np.exp(-0.85 * x_grid)
            * (1.0 + 4.0 * lat.outage))
    d, a = _grid_counts(np.where(alive, rate, 0.0), rng)
    m = len(d)
    x = _health(lat, d, a)
    outage = lat.outage[d, a]
    created_s = work_seconds(rng, np.asarray(P.REGION_UTC_HOUR)[p.region[a]])

    severity = -0.7 * x + 1.5 * outage + rng.standard_normal(m)
    priority = np.searchsorted(np.array([-1.0, 0.6, 1.6]), severity)
    escalated = rng.random(m) < sigmoid(-2.8 - 0.7 * x + 1.0 * (priority == 3))
    reopened = rng.random(m) < sigmoid(-2.6 - 0.4 * x)
    # Median about a day, a long tail of tickets open for weeks; slower when it goes badly.
    hours = np.exp(np.log(26.0) + 0.3 * (priority - 1) - 0.25 * x + 0.5 * escalated
                   + 1.0 * rng.standard_normal(m))
    resolved_s = created_s + hours * 3600.0
    resolved_day = d + np.floor(resolved_s / 86_400.0).astype(np.int64)
    resolved_s = np.floor(np.mod(resolved_s, 86_400.0))
    # Resolved after the data ends means still open; a churned account's tickets close with it.
    churn = lat.churn_day[a]
    closed_by_churn = resolved_day >= churn
    resolved_day = np.where(closed_by_churn, churn, resolved_day)
    resolved_s = np.where(closed_by_churn, 0.0, resolved_s)
    resolved = resolved_day < lat.days
    has_csat = resolved & ~closed_by_churn & (rng.random(m) < 0.4)
    csat = np.clip(np.round(4.0 + 0.55 * x - 0.5 * escalated - 0.3 * reopened
                            + 0.8 * rng.standard_normal(m)), 1, 5)
    sentiment = np.clip(np.round(0.1 + 0.35 * x - 0.25 * escalated
                                 + 0.35 * rng.standard_normal(m), 3), -1, 1)
    o = np.lexsort((created_s, d, a))
    rated = has_csat[o]
    csat_source = {"account": a[o][rated], "day": resolved_day[o][rated],
                   "seconds": resolved_s[o][rated], "score": csat[o][rated]}
    frame = pd.DataFrame({
        "account_id": str_column(a[o], ids),
        "ticket_id": str_column(np.arange(m), id_labels("T", m, 7)),
        "created_at": timestamps(start, d[o], created_s[o]),
        "resolved_at": nullable_timestamps(start, resolved_day[o], resolved_s[o], resolved[o]),
        "priority": str_column(priority[o], ("low", "normal", "high", "urgent")),
        "escalated": escalated[o],
        "reopened": reopened[o],
        "csat": np.where(has_csat, csat, np.nan)[o],
        "sentiment": sentiment[o],
    })
    return frame, csat_source


def build_surveys(lat: Latent, p: Profiles, rated: dict[str, np.ndarray], ids: np.ndarray,
                  start: date, rng: np.random.Generator) -> pd.DataFrame:
    """NPS waves about every quarter per account, and CSAT answers after resolved tickets."""
    days = lat.days
    wave = 91
    phase = rng.integers(0, wave, size=p.n)
    n_waves = np.maximum(0, (days - phase + wave - 1) // wave)
    a = np.repeat(np.arange(p.n), n_waves)
    k = np.arange(len(a)) - np.repeat(np.cumsum(n_waves) - n_waves, n_waves)
    d = phase[a] + k * wave
    respondents = 1 + rng.poisson(p.segment_values("nps_respondents")[a])
    a, d = np.repeat(a, respondents), np.repeat(d, respondents)
    d = d + rng.geometric(0.3, size=len(d)) - 1
    ok = (d < days) & p.has_surveys[a]
    a, d = a[ok], d[ok]
    ok = lat.alive()[d, a]
    a, d = a[ok], d[ok]
    x = _health(lat, d, a)
    answers = rng.random(len(a)) < sigmoid(0.1 + 0.5 * x)
    a, d, x = a[answers], d[answers], x[answers]
    nps = np.clip(np.round(7.0 + 1.8 * x + 1.6 * rng.standard_normal(len(a))), 0, 10)
    nps_s = work_seconds(rng, np.asarray(P.REGION_UTC_HOUR)[p.region[a]])

    # CSAT: the ticket's rating, submitted a little after resolution.
    t_acct = rated["account"]
    answered = (rated["day"] * 86_400.0 + rated["seconds"]
                + rng.uniform(0.5, 30.0, size=len(t_acct)) * 3600.0)
    c_day = np.floor(answered / 86_400.0).astype(np.int64)
    keep = p.has_surveys[t_acct] & (c_day < np.minimum(lat.churn_day[t_acct], days))
    c_acct, c_day = t_acct[keep], c_day[keep]
    c_sec = np.floor(np.mod(answered[keep], 86_400.0))
    c_score = rated["score"][keep]

    acct = np.concatenate([a, c_acct])
    day = np.concatenate([d, c_day])
    sec = np.concatenate([nps_s, c_sec])
    kind = np.concatenate([np.zeros(len(a), dtype=np.int8), np.ones(len(c_acct), dtype=np.int8)])
    score = np.concatenate([nps, c_score])
    o = np.lexsort((sec, day, acct))
    return pd.DataFrame({
        "account_id": str_column(acct[o], ids),
        "ts": timestamps(start, day[o], sec[o]),
        "kind": str_column(kind[o], ("nps", "csat")),
        "score": score[o].astype(np.float64),
    })


def build_touchpoints(lat: Latent, p: Profiles, ids: np.ndarray, start: date,
                      rng: np.random.Generator) -> pd.DataFrame:
    days = lat.days
    alive = lat.alive()
    x_grid = np.nan_to_num(lat.health.astype(np.float64))
    weekday = np.array([(np.datetime64(start) + i).astype("datetime64[D]").item().weekday() < 5
                        for i in range(days)])
    tier = np.asarray(TIER_TOUCH_FACTOR)[p.csm_tier]
    # CSMs reach out more when an account visibly struggles.
    rate = (p.segment_values("touch_rate")[None, :] * tier[None, :]
            * np.where(x_grid < -0.7, 1.6, 1.0) * np.where(weekday, 1.35, 0.1)[:, None])
    d, a = _grid_counts(np.where(alive, rate, 0.0), rng)
    mix = np.cumsum(np.asarray(TOUCH_MIX), axis=1)[p.segment[a]]
    pick = (rng.random(len(a))[:, None] > mix).sum(axis=1)
    kind = np.asarray([0, 2, 3])[np.minimum(pick, 2)]

    # QBRs on a schedule for high- and mid-touch accounts; unhealthy ones get skipped.
    every = p.segment_values("qbr_every").astype(np.int64)
    has_qbr = (every > 0) & (tier > 0)
    step = np.where(has_qbr, every, days + 1)
    phase = (rng.random(p.n) * step).astype(np.int64)
    n_q = np.where(has_qbr, np.maximum(0, (days - phase + step - 1) // step), 0)
    qa = np.repeat(np.arange(p.n), n_q)
    qk = np.arange(len(qa)) - np.repeat(np.cumsum(n_q) - n_q, n_q)
    qd = phase[qa] + qk * step[qa]
    ok = alive[qd, qa]
    qa, qd = qa[ok], qd[ok]
    held = rng.random(len(qa)) < sigmoid(1.5 + 1.0 * _health(lat, qd, qa)
                                         - 2.0 * lat.champion_gone[qd, qa])
    qa, qd = qa[held], qd[held]

    a = np.concatenate([a, qa])
    d = np.concatenate([d, qd])
    kind = np.concatenate([kind, np.ones(len(qa), dtype=np.int64)])
    m = len(a)
    x = _health(lat, d, a)
    champ = lat.champion_gone[d, a].astype(np.float64)
    inbound = (kind != 1) & (rng.random(m) < sigmoid(-1.6 - 0.5 * x))
    exec_base = np.asarray([0.15, 0.6, 0.05, 0.02])[kind]
    executive = rng.random(m) < exec_base * 2.0 * sigmoid(0.6 * x - 1.5 * champ)
    responded = rng.random(m) < sigmoid(1.0 + 1.0 * x - 2.0 * champ)
    seconds = work_seconds(rng, np.asarray(P.REGION_UTC_HOUR)[p.region[a]], 2.0)
    o = np.lexsort((seconds, d, a))
    resp = pd.array(responded[o], dtype="boolean")
    resp[inbound[o]] = pd.NA
    return pd.DataFrame({
        "account_id": str_column(a[o], ids),
        "ts": timestamps(start, d[o], seconds[o]),
        "kind": str_column(kind[o], TOUCH_KINDS),
        "direction": str_column(inbound[o].astype(np.int8), ("outbound", "inbound")),
        "executive": executive[o],
        "responded": resp,
    })
