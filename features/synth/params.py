"""The knobs of the synthetic SaaS world: one frozen profile per customer segment plus the shock and
signal constants, declared once.

This module owns numbers and the one shape of churn risk in health (no randomness, no frames).
The generator's modules read them; the tests check outcomes (churn ranges per segment, row
volumes), not these values. Rates are per day unless the name says otherwise; health is the
latent z-scale (0 is a typical account, higher is healthier, about one unit of spread across
accounts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

YEAR = 365.0
MONTH = 30


@dataclass(frozen=True)
class SegmentProfile:
    name: str
    share: float
    seats_median: float
    seats_sigma: float
    seats_min: int
    seats_max: int
    price_per_seat: tuple[float, float]
    """Yearly list price per seat, drawn uniformly per account."""
    plans: tuple[str, ...]
    plan_probs: tuple[float, ...]
    terms: tuple[int, ...]
    """Contract terms in days; MONTH is a monthly plan (a new subscription row every month)."""
    term_probs: tuple[float, ...]
    auto_renew_prob: float
    health_offset: float
    renewal_logit: float
    """Log-odds of not renewing at an annual contract end for a typical (health 0) account."""
    monthly_logit: float
    """Log-odds of cancelling at a monthly period end for a typical account (segments without
    monthly terms use it only in a world billed monthly throughout, `BILLING`)."""
    midterm_hazard: float
    """Daily churn hazard inside an annual contract (early termination) for a typical account.
    With `renewal_logit` it sets how annual-plan churn divides between non-renewals at a
    contract end and early terminations."""
    expansion_hazard: float
    """Daily expansion hazard of a typical account."""
    health_sensitivity: float
    """How strongly health moves this segment's churn odds (enterprise contracts are sticky)."""
    champion_logit: float
    """Churn log-odds added by a champion who just left: what sinks enterprise renewals."""
    usage_cut_logit: float
    """Churn log-odds added by a full usage cut: what sinks small customers."""
    csm_tiers: tuple[float, float, float]
    """Probabilities of high-touch, mid-touch, tech-touch (tech-touch accounts get no CSM)."""
    user_logit: float
    """Log-odds that a licensed user is active on a weekday, for a typical user and account."""
    ticket_rate: float
    touch_rate: float
    qbr_every: int
    """Days between QBRs for high- and mid-touch accounts; 0 for none."""
    nps_respondents: float
    """Mean extra NPS respondents per survey wave beyond the first."""


SEGMENT_PROFILES: tuple[SegmentProfile, ...] = (
    SegmentProfile(
        name="enterprise", share=0.15,
        seats_median=45, seats_sigma=0.55, seats_min=15, seats_max=300,
        price_per_seat=(900.0, 1600.0), plans=("enterprise",), plan_probs=(1.0,),
        terms=(365, 730, 1095), term_probs=(0.7, 0.2, 0.1), auto_renew_prob=0.15,
        health_offset=0.15, renewal_logit=-4.65, monthly_logit=-5.0, midterm_hazard=0.000045,
        expansion_hazard=0.0008,
        health_sensitivity=0.7, champion_logit=1.6, usage_cut_logit=0.3,
        csm_tiers=(0.85, 0.15, 0.0), user_logit=-2.3,
        ticket_rate=0.04, touch_rate=0.16, qbr_every=91, nps_respondents=2.0,
    ),
    SegmentProfile(
        name="mid-market", share=0.35,
        seats_median=14, seats_sigma=0.5, seats_min=5, seats_max=80,
        price_per_seat=(500.0, 900.0), plans=("pro", "business"), plan_probs=(0.4, 0.6),
        terms=(365, 730), term_probs=(0.92, 0.08), auto_renew_prob=0.35,
        health_offset=0.0, renewal_logit=-4.25, monthly_logit=-4.4, midterm_hazard=0.00007,
        expansion_hazard=0.0006,
        health_sensitivity=1.0, champion_logit=0.8, usage_cut_logit=0.9,
        csm_tiers=(0.2, 0.75, 0.05), user_logit=-2.3,
        ticket_rate=0.025, touch_rate=0.07, qbr_every=182, nps_respondents=0.7,
    ),
    SegmentProfile(
        name="smb", share=0.50,
        seats_median=5, seats_sigma=0.55, seats_min=1, seats_max=25,
        price_per_seat=(250.0, 450.0), plans=("starter", "pro"), plan_probs=(0.65, 0.35),
        terms=(MONTH, 365), term_probs=(0.45, 0.55), auto_renew_prob=0.6,
        health_offset=-0.1, renewal_logit=-1.95, monthly_logit=-3.37, midterm_hazard=0.0002,
        expansion_hazard=0.00035,
        health_sensitivity=1.2, champion_logit=0.2, usage_cut_logit=1.8,
        csm_tiers=(0.0, 0.83, 0.17), user_logit=-2.3,
        ticket_rate=0.015, touch_rate=0.035, qbr_every=0, nps_respondents=0.1,
    ),
)

INDUSTRIES = ("software", "financial services", "healthcare", "retail", "manufacturing",
              "education", "media", "logistics", "professional services", "public sector")
REGIONS = ("north-america", "europe", "apac", "latam")
REGION_PROBS = (0.45, 0.3, 0.17, 0.08)
REGION_UTC_HOUR = (17.0, 11.0, 4.0, 16.0)
"""Mid-working-day hour in UTC for each region: usage, tickets and meetings cluster around it."""
CSM_TIERS = ("high-touch", "mid-touch", "tech-touch")
ONBOARDING_PACKAGES = ("none", "standard", "premium")
ONBOARDING_PROBS = (0.35, 0.45, 0.2)
ONBOARDING_HEALTH = (-0.15, 0.0, 0.2)
ONBOARDING_RAMP_DAYS = (45.0, 30.0, 18.0)
OWNERS = ("Ana Ribeiro", "Ben Okafor", "Chloe Martin", "Dev Patel", "Eva Novak", "Femi Adeyemi",
          "Grace Liu", "Hugo Berg", "Ines Garcia", "Jonas Weber", "Kira Tanaka", "Liam O'Neill")

# Product features in rough order of popularity: healthy, mature accounts use more of the tail.
EVENTS = ("app.login", "dashboard.view", "record.create", "record.update", "search.run",
          "report.view", "comment.add", "file.upload", "report.export", "integration.sync",
          "automation.run", "workflow.edit", "api.call", "alert.configure", "admin.settings",
          "sso.configure", "audit.export", "sandbox.deploy")


@dataclass(frozen=True)
class EventTypeEffect:
    """A customer event type declared on a world, with a known effect on churn.

    Each account has a hidden propensity for the type, standard normal on any day, drifting
    over time (an AR(1) process with a memory of `timescale` days; fixed for 0): on each day it
    is active it emits `rate * exp(spread * propensity)` of the type's events on average. The
    propensity is the account's intent, and a churn decision acts on the intent it had
    `EVENT_INTENT_LEAD` days before (averaged over the `EVENT_INTENT_MEMORY` days up to then):
    its log-odds gain `churn_effect` times that average.
    Positive: an account heading to churn does it more in the weeks before it leaves (exports
    its data, views the downgrade page); negative: less (an integration set up); 0: noise. So
    the effect acts through behaviour the data shows before the churn. The truth records the
    intent's log-odds per day (`event_logit`) and what the counts show of it
    (`event_logit_seen`), which is what the oracle weighs.
    """

    name: str
    churn_effect: float = 0.0
    rate: float = 1.0
    """Mean events of the type per active day of an account of propensity 0."""
    spread: float = 1.0
    """Log-rate per unit of propensity: how clearly the counts show it."""
    timescale: float = 60.0
    """Days for the propensity to forget itself to 1/e; 0: fixed for the account's life."""

    def __post_init__(self) -> None:
        if not self.name or self.name in EVENTS:
            raise ValueError(f"event type {self.name!r}: needs a name of its own (not one of "
                             "the product's events)")
        if self.rate <= 0 or self.spread < 0 or self.timescale < 0:
            raise ValueError(f"event type {self.name!r}: rate must be > 0, spread and "
                             "timescale >= 0")


@dataclass(frozen=True)
class Intervention:
    """An opt-in playbook run on some accounts, with a known true effect on churn.

    On day `start_day` of the period, each account that is a customer then is treated with
    probability sigmoid(logit(`share`) + `selection` * r), r = 1 when a contract of a yearly
    (or longer) term ends within `duration` days (what the score's `renewal_soon` flag shows,
    bar a monthly contract without auto-renew, which the flag raises too, and an end exactly
    `duration` days out), else 0: a rule on an observable that goes with far more churn (a
    renewal is where accounts leave), so a naive treated-versus-untreated comparison is biased
    against the playbook, and matching on the score's inputs, its flags and the contract's
    timing can remove the bias. For
    `duration` days from `start_day` a treated account's daily churn hazard is multiplied by
    `hazard_ratio` (the true effect); the truth keeps the untreated hazards beside the treated
    ones, so the true effect on any window is known exactly."""

    start_day: int
    hazard_ratio: float = 0.5
    duration: int = 90
    share: float = 0.1
    selection: float = 2.5

    def __post_init__(self) -> None:
        if self.start_day < 1 or self.duration < 1:
            raise ValueError("intervention: start_day and duration must be at least 1")
        if not 0 < self.hazard_ratio <= 1 or not 0 < self.share < 1 or self.selection < 0:
            raise ValueError("intervention: hazard_ratio in (0, 1], share in (0, 1), "
                             "selection >= 0")


EXAMPLE_EVENT_TYPES: tuple[EventTypeEffect, ...] = (
    EventTypeEffect("billing.downgrade_viewed", churn_effect=1.5, rate=3.0, timescale=120.0),
    EventTypeEffect("data.export_all", churn_effect=1.0, rate=3.0, timescale=120.0),
    EventTypeEffect("integration.connected", churn_effect=-1.5, rate=3.0, timescale=120.0),
    EventTypeEffect("theme.changed", churn_effect=0.0, rate=3.0, timescale=120.0),
    EventTypeEffect("tooltip.dismissed", churn_effect=0.0, rate=3.0, timescale=120.0),
)
"""A world's customer event types with known effects: two raising churn, one lowering it, two
noise (what the event-type tests and bench/bench_event_types.py generate)."""
EVENT_INTENT_LEAD = 30
"""Days between an account's intent (its event-type propensities) and the churn decision it
drives: customers make up their minds weeks before the contract end, and their events show it
in between. It is what lets data as of a date reveal most of the next month's decisions."""

EVENT_INTENT_MEMORY = 30.0
"""Days of the exponential average of the intent a churn decision weighs (0: that day's)."""

BILLING = ("mixed", "monthly", "annual")
"""How a world bills: each segment's own mix of terms, every account monthly, or no monthly
plan (each segment's yearly and multi-year terms in their own proportions)."""

# Latent health: account effect + AR(1) + shocks.
ACCOUNT_EFFECT_SD = 0.6
AR_TIMESCALE = 40.0
AR_SD = 0.5
HEALTH_MEMORY = 60.0
"""Days of the exponential average of health that renewal and cancel decisions look at."""
RENEWAL_BETA = 3.4
"""Log-odds of non-renewal per unit of `distress` of the averaged health (times the segment's
health_sensitivity); MONTHLY_BETA and MIDTERM_BETA likewise for monthly and early churn.

The renewal is where health decides. A customer that has paid for a year rarely breaks the
contract because it is unhappy; it says no at the renewal review. So this slope is well above
MIDTERM_BETA: health weighs far more on an account whose renewal falls inside a horizon than
on one whose contract runs on. That interaction is real in B2B SaaS, and a linear score cannot
represent it: with a slope close to MIDTERM_BETA the churn log-odds would be nearly additive in
health, and logistic regression would come close to the best possible model. The segments'
`renewal_logit` values go with this slope, so churn volumes stay within the ranges the tests
check."""
MONTHLY_BETA = 1.9
MIDTERM_BETA = 1.8
SAFE_HEALTH = 0.8
"""Health beyond which an account gets no safer: the odds flatten out."""
DISTRESS_AT = -0.5
DISTRESS_CURVE = 0.6
"""Below DISTRESS_AT the odds climb faster than linearly: distress compounds."""

FIRST_RENEWAL_LOGIT = 0.45
HIDDEN_RISK_SD = 0.6
"""Spread of an account's churn propensity that no data shows (the buyer's temperament, a rival's
offer): why even a perfect model of the observable health stays below the oracle."""
AUTO_RENEW_LOGIT = -0.35
BUDGET_CUT_LOGIT = 0.9
BUDGET_CUT_HEALTH = -0.5
BUDGET_CUT_DOWNSELL = 0.7
EXPANSION_CAP = 0.006
"""Most a day's expansion hazard can be (about two expansions a year). There is no cool-down
after an expansion on purpose: hazards that never depend on past draws keep the oracle exact."""
ONBOARDING_DIP = -0.4


@dataclass(frozen=True)
class ShockKind:
    name: str
    yearly_rate: float
    health: tuple[float, float]
    """Immediate health change, drawn uniformly from this range."""
    timescale: float
    """Days for the health change to decay to 1/e; 0 means permanent."""


SHOCKS: tuple[ShockKind, ...] = (
    ShockKind("champion_left", 0.22, (-1.6, -0.8), 120.0),
    ShockKind("usage_cut", 0.1, (-0.9, -0.4), 200.0),
    ShockKind("budget_cut", 0.06, (0.0, 0.0), 0.0),
    ShockKind("new_use_case", 0.15, (0.5, 1.0), 100.0),
)
USAGE_CUT_FACTOR = (0.25, 0.55)
"""A usage cut keeps this share of the users' activity (permanent)."""
OUTAGES_PER_YEAR = 8.0
OUTAGE_REACH = 0.6
"""Share of the struck region's accounts an outage hits."""
OUTAGE_HEALTH = (-0.6, -0.2)
OUTAGE_TIMESCALE = 10.0
OUTAGE_TICKET_DAYS = 3

# Which accounts lack a source entirely.
NO_SURVEYS_SHARE = 0.15
NO_INVOICES_SHARE = 0.08
"""Billed through a marketplace: no invoices in our billing system."""
NEW_ACCOUNTS_PER_YEAR = 0.12
"""Accounts signing up during the period, as a share of the requested accounts per year."""
MAX_HISTORY_DAYS = 5 * 365


def distress(health: np.ndarray) -> np.ndarray:
    """The shape of churn risk in health, shared by every churn decision: linear in the middle,
    flat for very healthy accounts, convex for struggling ones (so no linear score is exact)."""
    h = np.asarray(health, dtype=np.float64)
    return -np.minimum(h, SAFE_HEALTH) + DISTRESS_CURVE * np.maximum(DISTRESS_AT - h, 0.0) ** 2
