"""The hidden life of every synthetic account, day by day: latent health, shocks, and the
commercial events it drives (renewal or churn at contract ends, yearly or monthly, a little
early termination, expansions), with the exact daily hazards each draw used.

It owns the truth: `churn_hazard[d, a]` is the probability the account churns on day d (given it
is still a customer), and the churn draw uses exactly that number, so the probability computed
from the hazards is the true one given the hidden path. Beside it, the state each day's data
came from, in the terms of the churn decision (`end_logit`, `midterm_hazard`, `days_to_end`,
`event_logit`): what the oracle as of a date reads, since the path after it shows in no data.
The process goes on after a churn (hypothetically) so the hazards in any window never depend
on the draws. It must not produce
observations (usage, tickets, ...): those are noisy views of this state built by other modules.
Arrays are day-major, shape (days, accounts), so each simulated day writes one contiguous row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from features.synth import params as P
from features.synth.accounts import Profiles
from features.synth.columns import sigmoid

CHURN_REASONS = ("budget", "champion left", "low usage", "reliability", "product fit",
                 "competitor", "price")
SHOCK_KINDS = tuple(s.name for s in P.SHOCKS) + ("outage",)


@dataclass(frozen=True)
class Events:
    """Commercial or hidden events as parallel arrays (account code, day index, ...)."""

    account: np.ndarray
    day: np.ndarray
    value: np.ndarray
    """Kind code for shocks and churns; arr for contracts; arr_delta for expansions."""
    seats: np.ndarray | None = None


@dataclass(frozen=True)
class Latent:
    health: np.ndarray
    """(days, accounts) latent health, NaN before signup; it goes on after a churn."""
    churn_hazard: np.ndarray
    expansion_hazard: np.ndarray
    seats: np.ndarray
    """(days, accounts) seats in use: the contract plus expansions not yet on a new contract."""
    usage_factor: np.ndarray
    """(days, accounts) multiplier on activity: onboarding ramp and usage cuts."""
    champion_gone: np.ndarray
    """(days, accounts) strength of a recent champion departure (0 none, 1 just left)."""
    outage: np.ndarray
    """(days, accounts) an outage hit the account in the last few days."""
    end_logit: np.ndarray
    """(days, accounts) log-odds of leaving at a contract end, were one on that day, from that
    day's state: health, shocks, plan and renewal count; without the hidden churn risk (which
    no data shows) and without the event types' intent (`event_logit`)."""
    midterm_hazard: np.ndarray
    """(days, accounts) the daily early-termination hazard from that day's state, without the
    hidden churn risk and the intent (0 on monthly plans, which end only at a period end)."""
    days_to_end: np.ndarray
    """(days, accounts) days from that day to the next scheduled contract end (0: that day)."""
    event_logit: np.ndarray
    """(days, accounts) churn log-odds the event types' intent adds to a decision that day."""
    first_day: np.ndarray
    churn_day: np.ndarray
    """Day index of the churn; `days` when the account did not churn in the period."""
    contract_start: np.ndarray
    """Start day of the contract in force on the account's first day in the data."""
    shocks: Events
    churns: Events
    expansions: Events
    contracts: Events
    """A new subscription: the first one the data shows, then each renewal."""
    treated: np.ndarray | None = None
    """(accounts,) picked by the intervention (None without one)."""
    untreated_churn_hazard: np.ndarray | None = None
    """(days, accounts) the churn hazards without the intervention (None without one)."""

    @property
    def days(self) -> int:
        return self.health.shape[0]

    def alive(self) -> np.ndarray:
        """(days, accounts) the account is a customer that day (emits data)."""
        d = np.arange(self.days)[:, None]
        return (d >= self.first_day[None, :]) & (d < self.churn_day[None, :])


class _Log:
    """Per-day event arrays, concatenated once at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, *cols: np.ndarray) -> None:
        if len(cols[0]):
            self.parts.append(cols)

    def events(self, with_seats: bool = False) -> Events:
        if not self.parts:
            empty = np.zeros(0)
            return Events(empty.astype(np.int32), empty.astype(np.int32), empty,
                          empty.astype(np.int32) if with_seats else None)
        cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)]
        return Events(cols[0].astype(np.int32), cols[1].astype(np.int32), cols[2],
                      cols[3].astype(np.int32) if with_seats else None)


def simulate(p: Profiles, days: int, rng: np.random.Generator,
             progress: Callable[[float], None] | None = None,
             event_logit: np.ndarray | None = None,
             intervention: P.Intervention | None = None,
             treat_draws: np.ndarray | None = None) -> Latent:
    """Run the hidden process over `days` days for all accounts at once (a loop over days).

    `event_logit`: (days, accounts) the churn log-odds the declared event types add each day
    (the sum of each type's `churn_effect * propensity`,
    `features.synth.params.EventTypeEffect`). `intervention` with `treat_draws` (uniforms, one
    per account, from a generator of their own so the rest draws what it draws without it):
    the opt-in playbook of `features.synth.params.Intervention`."""
    n = p.n
    term = p.term.astype(np.int64)
    monthly_plan = term == P.MONTH
    first_day = np.maximum(p.created_day, 0).astype(np.int32)
    renewal_logit = p.segment_values("renewal_logit")
    monthly_logit = p.segment_values("monthly_logit")
    sensitivity = p.segment_values("health_sensitivity")
    champion_logit = p.segment_values("champion_logit")
    usage_cut_logit = p.segment_values("usage_cut_logit")
    midterm_hazard = p.segment_values("midterm_hazard")
    expansion_base = p.segment_values("expansion_hazard")
    ramp_days = np.asarray(P.ONBOARDING_RAMP_DAYS)[p.onboarding]

    # The contract in force on the first day: for old accounts, the last anniversary before start.
    past_terms = np.where(p.created_day < 0, (-p.created_day) // term, 0)
    contract_start = (p.created_day + past_terms * term).astype(np.int32)
    next_end = contract_start + term
    renewals_done = past_terms.astype(np.int32)

    seats_contract = p.seats.astype(np.float64)
    price = p.price.copy()
    pending_seats = np.zeros(n)

    phi = np.exp(-1.0 / P.AR_TIMESCALE)
    ar_noise = P.AR_SD * np.sqrt(1.0 - phi**2)
    z = P.AR_SD * rng.standard_normal(n)
    hbar = np.zeros(n)
    shock_level = np.zeros((len(P.SHOCKS), n))
    shock_decay = np.array([np.exp(-1.0 / s.timescale) if s.timescale else 1.0 for s in P.SHOCKS])
    shock_rate = np.array([s.yearly_rate / P.YEAR for s in P.SHOCKS])
    i_champ = SHOCK_KINDS.index("champion_left")
    i_cut = SHOCK_KINDS.index("usage_cut")
    i_budget = SHOCK_KINDS.index("budget_cut")
    champion_size = np.ones(n)
    budget = np.zeros(n, dtype=bool)
    cut_factor = np.ones(n)
    outage_level = np.zeros(n)
    outage_day = np.full(n, -10_000, dtype=np.int64)
    churn_day = np.full(n, days, dtype=np.int32)
    # `created`: the hidden process runs (also after a churn, so the truth holds the hazards the
    # account would have had: they never depend on the churn draw). `alive`: a customer, who
    # emits data and whose draws count.
    created = p.created_day < 0
    alive = created.copy()

    shape = (days, n)
    health = np.full(shape, np.nan, dtype=np.float32)
    churn_h = np.zeros(shape)
    expand_h = np.zeros(shape)
    seats_use = np.zeros(shape, dtype=np.int32)
    usage_factor = np.zeros(shape, dtype=np.float32)
    champion_gone = np.zeros(shape, dtype=np.float32)
    outage = np.zeros(shape, dtype=bool)
    end_state = np.zeros(shape, dtype=np.float32)
    midterm_state = np.zeros(shape, dtype=np.float32)
    days_to_end = np.zeros(shape, dtype=np.int32)

    treated = np.zeros(n, dtype=bool) if intervention is not None else None
    untreated_h = np.zeros(shape) if intervention is not None else None

    shocks, churns, expansions, contracts = _Log(), _Log(), _Log(), _Log()
    first = np.arange(n)
    contracts.add(first, first_day.copy(), np.round(seats_contract * price, 2),
                  seats_contract.copy())

    for d in range(days):
        new = p.created_day == d
        # Accounts older than the period start their average health where they stand.
        settle = new | (created if d == 0 else False)
        was_created = created.copy()
        created |= new
        alive |= new
        if new.any():
            # New customers start a little shaky and settle over onboarding.
            z[new] = 0.4 * rng.standard_normal(int(new.sum())) - 0.1

        arrive = (rng.random((len(P.SHOCKS), n)) < shock_rate[:, None]) & was_created
        arrive[i_budget] &= ~budget
        size = rng.uniform(0.0, 1.0, size=(len(P.SHOCKS), n))
        for k, shock in enumerate(P.SHOCKS):
            lo, hi = shock.health
            shock_level[k] = shock_level[k] * shock_decay[k] + arrive[k] * (lo + (hi - lo) *
                                                                              size[k])
            if (arrive[k] & alive).any():
                idx = np.flatnonzero(arrive[k] & alive)
                shocks.add(idx, np.full(len(idx), d), np.full(len(idx), k))
        if arrive[i_champ].any():
            champion_size[arrive[i_champ]] = -shock_level[i_champ][arrive[i_champ]]
        budget |= arrive[i_budget]
        cut_lo, cut_hi = P.USAGE_CUT_FACTOR
        cut = cut_lo + (cut_hi - cut_lo) * size[i_cut]
        cut_factor = np.where(arrive[i_cut], cut_factor * cut, cut_factor)

        outage_level *= np.exp(-1.0 / P.OUTAGE_TIMESCALE)
        if rng.random() < P.OUTAGES_PER_YEAR / P.YEAR:
            region = rng.choice(len(P.REGIONS), p=P.REGION_PROBS)
            hit = was_created & (p.region == region) & (rng.random(n) < P.OUTAGE_REACH)
            lo, hi = P.OUTAGE_HEALTH
            outage_level[hit] += lo + (hi - lo) * rng.random(int(hit.sum()))
            outage_day[hit] = d
            idx = np.flatnonzero(hit & alive)
            shocks.add(idx, np.full(len(idx), d), np.full(len(idx), SHOCK_KINDS.index("outage")))

        z = phi * z + ar_noise * rng.standard_normal(n)
        tenure = np.maximum(d - p.created_day, 0)
        x = (p.health_mean + z + shock_level.sum(axis=0) + outage_level
             + P.BUDGET_CUT_HEALTH * budget + P.ONBOARDING_DIP * np.exp(-tenure / 60.0))
        hbar = np.where(settle, x, hbar + (x - hbar) / P.HEALTH_MEMORY)

        # Churn is decided at contract ends (the customer does not renew); a little early
        # termination happens inside annual contracts.
        at_end = next_end == d
        risk = sensitivity * P.distress(hbar)
        # Segments also die of their own causes: enterprises when the champion leaves, small
        # customers when usage collapses (interactions no single linear score captures).
        champion_now = np.clip(-shock_level[i_champ] / champion_size, 0.0, 1.0)
        seen = (champion_logit * champion_now + usage_cut_logit * (1.0 - cut_factor)
                + P.BUDGET_CUT_LOGIT * budget)
        state_end = seen + np.where(
            monthly_plan, monthly_logit + P.MONTHLY_BETA * risk,
            renewal_logit + P.RENEWAL_BETA * risk + P.FIRST_RENEWAL_LOGIT * (renewals_done == 0)
            + P.AUTO_RENEW_LOGIT * p.auto_renew)
        state_daily = np.where(monthly_plan, 0.0,
                               midterm_hazard * np.exp(P.MIDTERM_BETA * risk + seen))
        traits = p.hidden_risk + (event_logit[d] if event_logit is not None else 0.0)
        end_logit = state_end + traits
        daily = state_daily * np.exp(traits)
        end_state[d] = state_end
        midterm_state[d] = state_daily
        days_to_end[d] = next_end - d
        h = np.where(at_end, sigmoid(end_logit), np.minimum(daily, 0.05))
        h = np.where(created & ~new, h, 0.0)
        if intervention is not None:
            renewal_due = ~monthly_plan & (next_end - d >= 0) \
                & (next_end - d < intervention.duration)
            h = _intervene(intervention, d, h, renewal_due, alive & ~new, treated,
                           treat_draws, untreated_h)
        churned = alive & (rng.random(n) < h)
        if churned.any():
            idx = np.flatnonzero(churned)
            churns.add(idx, np.full(len(idx), d),
                       _reasons(rng, idx, budget, shock_level[i_champ], cut_factor, outage_day, d))
            churn_day[idx] = d
        churn_h[d] = h

        # Former customers keep their schedule of (hypothetical) contract ends in the truth.
        next_end = np.where(at_end, next_end + term, next_end)
        renewals_done += at_end
        renew = at_end & alive & ~churned
        if renew.any():
            idx = np.flatnonzero(renew)
            seats_contract[idx] += pending_seats[idx]
            pending_seats[idx] = 0.0
            down = idx[budget[idx]]
            seats_contract[down] = np.maximum(1.0, np.round(seats_contract[down] *
                                                            P.BUDGET_CUT_DOWNSELL))
            uplift = np.where(monthly_plan[idx], 0.0, 0.06 * rng.random(len(idx)))
            price[idx] = np.round(price[idx] * (1.0 + uplift), 2)
            contracts.add(idx, np.full(len(idx), d), np.round(seats_contract[idx] * price[idx], 2),
                          seats_contract[idx].copy())

        # Expansion: healthy accounts whose health is rising.
        momentum = x - hbar
        e = expansion_base * np.exp(0.8 * hbar + 1.0 * momentum) * np.where(budget, 0.2, 1.0)
        e = np.where(created & (tenure >= 30), np.minimum(e, P.EXPANSION_CAP), 0.0)
        expanded = alive & ~churned & (rng.random(n) < e)
        if expanded.any():
            idx = np.flatnonzero(expanded)
            current = seats_contract[idx] + pending_seats[idx]
            delta = np.maximum(1.0, np.round(current * rng.uniform(0.1, 0.4, size=len(idx))))
            expansions.add(idx, np.full(len(idx), d), np.round(delta * price[idx], 2), delta)
            # Users come at once; the contract shows the seats at the next renewal.
            pending_seats[idx] += delta
        expand_h[d] = e

        health[d] = np.where(created, x, np.nan)
        seats_use[d] = np.where(alive, seats_contract + pending_seats, 0)
        ramp = 1.0 - np.exp(-(tenure + 1.0) / ramp_days)
        usage_factor[d] = np.where(alive, ramp * cut_factor, 0.0)
        champion_gone[d] = np.where(alive, champion_now, 0.0)
        outage[d] = alive & (d - outage_day < P.OUTAGE_TICKET_DAYS)
        alive &= ~churned
        if progress is not None and (d % 20 == 0 or d == days - 1):
            progress((d + 1) / days)

    return Latent(health=health, churn_hazard=churn_h, expansion_hazard=expand_h,
                  seats=seats_use, usage_factor=usage_factor, champion_gone=champion_gone,
                  outage=outage, end_logit=end_state, midterm_hazard=midterm_state,
                  days_to_end=days_to_end,
                  event_logit=(np.zeros(shape, dtype=np.float32) if event_logit is None
                               else event_logit.astype(np.float32)),
                  first_day=first_day, churn_day=churn_day,
                  contract_start=contract_start, shocks=shocks.events(),
                  churns=churns.events(), expansions=expansions.events(with_seats=True),
                  contracts=contracts.events(with_seats=True), treated=treated,
                  untreated_churn_hazard=untreated_h)


def _intervene(iv: P.Intervention, d: int, h: np.ndarray, renewal_due: np.ndarray,
               eligible: np.ndarray, treated: np.ndarray | None,
               draws: np.ndarray | None, untreated_h: np.ndarray | None) -> np.ndarray:
    """The day's churn hazards under the intervention (picking the treated on its first day)."""
    assert treated is not None and draws is not None and untreated_h is not None
    untreated_h[d] = h
    if d == iv.start_day:
        p = sigmoid(np.log(iv.share / (1.0 - iv.share)) + iv.selection * renewal_due)
        treated |= eligible & (draws < p)
    if iv.start_day <= d < iv.start_day + iv.duration:
        return np.where(treated, h * iv.hazard_ratio, h)
    return h


def _reasons(rng: np.random.Generator, idx: np.ndarray, budget: np.ndarray, champ: np.ndarray,
             cut_factor: np.ndarray, outage_day: np.ndarray, d: int) -> np.ndarray:
    """The reason a churned customer gives: its visible trouble if any, else a generic one."""
    generic = rng.choice([4, 5, 6], size=len(idx), p=[0.45, 0.35, 0.2])
    reason = np.where(d - outage_day[idx] < 30, 3, generic)
    reason = np.where(cut_factor[idx] < 0.7, 2, reason)
    reason = np.where(champ[idx] < -0.4, 1, reason)
    reason = np.where(budget[idx], 0, reason)
    # Some customers leave without saying why.
    return np.where(rng.random(len(idx)) < 0.2, -1, reason)
