"""Who the synthetic customers are: segment, firmographics, contract shape, custom attributes and
the hidden account-level traits, drawn once per account; and the `accounts` table built from them.

It must not simulate time: what happens to an account day by day lives in `features.synth.latent`.
Day indices count from the generator's `start` (negative for accounts that signed up before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from features.synth import params as P
from features.synth.columns import id_labels, sigmoid, str_column, timestamps

_NAME_HEADS = ("Acme", "Northwind", "Blue Harbor", "Vertex", "Summit", "Golden Gate", "Ironwood",
               "Cedar", "Polaris", "Redwood", "Silverline", "Brightpath", "Orbit", "Keystone",
               "Lumen", "Maple", "Nimbus", "Oakridge", "Pioneer", "Quantum", "Riverside",
               "Sterling", "Tidewater", "Unity", "Evergreen", "Harbor Point", "Falcon", "Granite",
               "Juniper", "Westfield")
_NAME_TAILS = ("Analytics", "Logistics", "Health", "Retail", "Systems", "Labs", "Capital",
               "Foods", "Media", "Energy", "Robotics", "Partners", "Studios", "Networks",
               "Clinics", "Learning", "Freight", "Insurance", "Software", "Works")
_NAME_FORMS = ("Inc", "Ltd", "GmbH", "LLC", "Group", "Co", "SA", "BV")


@dataclass(frozen=True)
class Profiles:
    """Per-account traits, one array entry per account (index = account code)."""

    n: int
    segment: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    plan: np.ndarray
    """Index into the segment's plan list."""
    created_day: np.ndarray
    term: np.ndarray
    """Contract term in days (P.MONTH for a monthly plan)."""
    auto_renew: np.ndarray
    csm_tier: np.ndarray
    onboarding: np.ndarray
    owner: np.ndarray
    """Index into OWNERS, -1 for tech-touch accounts (no CSM)."""
    seats: np.ndarray
    """Seats on the first subscription the data shows."""
    price: np.ndarray
    """Yearly price per seat."""
    health_mean: np.ndarray
    usage_style: np.ndarray
    """Account-level activity propensity unrelated to health (some tools are used weekly)."""
    breadth: np.ndarray
    """How many product features a typical healthy user of this account touches."""
    hidden_risk: np.ndarray
    """Log-odds added to every renewal decision; it shows in no table."""
    has_surveys: np.ndarray
    has_invoices: np.ndarray
    name: np.ndarray

    @property
    def has_touchpoints(self) -> np.ndarray:
        return self.csm_tier != P.CSM_TIERS.index("tech-touch")

    @property
    def arr(self) -> np.ndarray:
        return np.round(self.seats * self.price, 2)

    def segment_values(self, attr: str) -> np.ndarray:
        """A per-segment profile field broadcast to accounts."""
        values = np.array([getattr(p, attr) for p in P.SEGMENT_PROFILES], dtype=np.float64)
        return values[self.segment]


def draw_profiles(n: int, days: int, rng: np.random.Generator,
                  billing: str = "mixed") -> Profiles:
    """Draw n accounts: most signed up before the period starts, some during it.

    `billing` (one of `params.BILLING`) picks the contract terms: the segments' own mix, all
    monthly, or no monthly plan. It reuses the same draws, so the accounts are the same ones
    either way but for their terms (and what follows from them)."""
    if billing not in P.BILLING:
        raise ValueError(f"billing must be one of {', '.join(P.BILLING)}, got {billing!r}")
    profiles = P.SEGMENT_PROFILES
    segment = rng.choice(len(profiles), size=n, p=[p.share for p in profiles]).astype(np.int8)
    industry = rng.integers(0, len(P.INDUSTRIES), size=n).astype(np.int16)
    region = rng.choice(len(P.REGIONS), size=n, p=P.REGION_PROBS).astype(np.int8)

    n_new = int(round(n * min(0.35, P.NEW_ACCOUNTS_PER_YEAR * days / P.YEAR)))
    is_new = np.zeros(n, dtype=bool)
    is_new[rng.choice(n, size=n_new, replace=False)] = True
    # Older accounts are rarer (the company grew), so history ages are skewed towards recent.
    history = 30 + np.floor((P.MAX_HISTORY_DAYS - 30) * rng.random(n) ** 1.6)
    created_day = np.where(is_new, np.floor(rng.random(n) * max(days - 1, 1)), -history)
    created_day = created_day.astype(np.int32)

    plan = np.zeros(n, dtype=np.int8)
    term = np.zeros(n, dtype=np.int32)
    auto_renew = np.zeros(n, dtype=bool)
    csm_tier = np.zeros(n, dtype=np.int8)
    seats = np.zeros(n, dtype=np.int32)
    price = np.zeros(n)
    u = rng.random((6, n))
    for s, prof in enumerate(profiles):
        m = segment == s
        k = int(m.sum())
        plan[m] = _pick(prof.plan_probs, u[0, m])
        term[m] = _terms(prof, u[1, m], billing)
        auto_renew[m] = u[2, m] < prof.auto_renew_prob
        csm_tier[m] = _pick(prof.csm_tiers, u[3, m])
        raw = prof.seats_median * np.exp(prof.seats_sigma * rng.standard_normal(k))
        seats[m] = np.clip(np.round(raw), prof.seats_min, prof.seats_max)
        lo, hi = prof.price_per_seat
        price[m] = np.round(lo + (hi - lo) * u[4, m], 2)
    # Monthly plans renew themselves by construction.
    auto_renew |= term == P.MONTH

    onboarding = _pick(P.ONBOARDING_PROBS, u[5]).astype(np.int8)
    owner = rng.integers(0, len(P.OWNERS), size=n).astype(np.int16)
    owner[csm_tier == P.CSM_TIERS.index("tech-touch")] = -1

    base_health = (np.array([p.health_offset for p in profiles])[segment]
                   + np.asarray(P.ONBOARDING_HEALTH)[onboarding])
    health_mean, hidden_risk = _survivor_traits(rng, segment, term, created_day, auto_renew,
                                                base_health)
    usage_style = 0.45 * rng.standard_normal(n)
    breadth = np.clip(rng.normal(7.0, 2.0, size=n) + 1.5 * (segment == 0), 3.0,
                      len(P.EVENTS) - 2)
    has_surveys = rng.random(n) >= P.NO_SURVEYS_SHARE
    has_invoices = rng.random(n) >= P.NO_INVOICES_SHARE
    name = np.stack([rng.integers(0, len(x), size=n)
                     for x in (_NAME_HEADS, _NAME_TAILS, _NAME_FORMS)])
    return Profiles(n=n, segment=segment, industry=industry, region=region, plan=plan,
                    created_day=created_day, term=term, auto_renew=auto_renew,
                    csm_tier=csm_tier, onboarding=onboarding, owner=owner, seats=seats,
                    price=price, health_mean=health_mean, usage_style=usage_style,
                    breadth=breadth, hidden_risk=hidden_risk, has_surveys=has_surveys,
                    has_invoices=has_invoices, name=name)


def _survivor_traits(rng: np.random.Generator, segment: np.ndarray, term: np.ndarray,
                     created_day: np.ndarray, auto_renew: np.ndarray, base_health: np.ndarray,
                     rounds: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Draw each account's lasting health level and hidden churn propensity, as survivors.

    An account that signed up years before the period is in the data only because it renewed every
    time so far: redraw its traits until they pass its past renewals (rejection sampling on the
    static part of the renewal odds `features.synth.latent` uses). Without this the first simulated
    year would weed out the weak accounts and churn far more than the second.
    """
    n = len(segment)
    renewal = np.array([p.renewal_logit for p in P.SEGMENT_PROFILES])[segment]
    monthly_logit = np.array([p.monthly_logit for p in P.SEGMENT_PROFILES])[segment]
    sensitivity = np.array([p.health_sensitivity for p in P.SEGMENT_PROFILES])[segment]
    monthly = term == P.MONTH
    past = np.where(created_day < 0, (-created_day) // term, 0)
    health = np.empty(n)
    hidden = np.empty(n)
    todo = np.ones(n, dtype=bool)
    for _ in range(rounds):
        k = int(todo.sum())
        health[todo] = base_health[todo] + P.ACCOUNT_EFFECT_SD * rng.standard_normal(k)
        hidden[todo] = P.HIDDEN_RISK_SD * rng.standard_normal(k)
        risk = sensitivity * P.distress(health)
        logit = hidden + np.where(monthly, monthly_logit + P.MONTHLY_BETA * risk,
                                  renewal + P.RENEWAL_BETA * risk
                                  + P.AUTO_RENEW_LOGIT * auto_renew)
        survived = rng.random(n) < (1.0 - sigmoid(logit)) ** past
        todo &= ~survived
        if not todo.any():
            break
    return health, hidden


def _terms(prof: P.SegmentProfile, u: np.ndarray, billing: str) -> np.ndarray:
    """Contract terms of a segment's accounts from their uniforms, as `billing` has it."""
    if billing == "monthly":
        return np.full(len(u), P.MONTH)
    terms, probs = prof.terms, prof.term_probs
    if billing == "annual" and P.MONTH in terms:
        kept = [i for i, t in enumerate(terms) if t != P.MONTH]
        terms, probs = tuple(terms[i] for i in kept), tuple(probs[i] for i in kept)
    return np.asarray(terms)[_pick(probs, u)]


def _pick(probs: tuple[float, ...], u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of category indices from uniforms."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(probs) - 1)


def account_ids(n: int) -> np.ndarray:
    return id_labels("A", n)


def build_accounts(p: Profiles, ids: np.ndarray, start: date) -> pd.DataFrame:
    """The `accounts` table, with `csm_tier` and `onboarding_package` as custom attributes.

    seats and arr are those of the first subscription the data shows (at the start, or at signup
    for new accounts): a snapshot taken later would leak future expansions into a static column.
    """
    codes = np.arange(p.n)
    names = np.char.add(np.char.add(np.asarray(_NAME_HEADS)[p.name[0]], " "),
                        np.char.add(np.char.add(np.asarray(_NAME_TAILS)[p.name[1]], " "),
                                    np.asarray(_NAME_FORMS)[p.name[2]]))
    offsets = np.cumsum([0] + [len(prof.plans) for prof in P.SEGMENT_PROFILES])[:-1]
    plan_flat = [pl for prof in P.SEGMENT_PROFILES for pl in prof.plans]
    return pd.DataFrame({
        "account_id": str_column(codes, ids),
        "name": str_column(codes, names),
        "segment": str_column(p.segment, [s.name for s in P.SEGMENT_PROFILES]),
        "industry": str_column(p.industry, P.INDUSTRIES),
        "region": str_column(p.region, P.REGIONS),
        "plan": str_column(offsets[p.segment] + p.plan, plan_flat),
        "seats": p.seats.astype(np.int64),
        "arr": p.arr,
        "created_at": timestamps(start, p.created_day),
        "owner": str_column(np.maximum(p.owner, 0), P.OWNERS, valid=p.owner >= 0),
        "csm_tier": str_column(p.csm_tier, P.CSM_TIERS),
        "onboarding_package": str_column(p.onboarding, P.ONBOARDING_PACKAGES),
    })
