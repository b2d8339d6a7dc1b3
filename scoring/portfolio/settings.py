"""Settings of portfolio intelligence: value tiers and health-segment classes, RFM, lifecycle
stages and usage anomalies. Every threshold a class, score or stage is decided by lives here, so
a customer's team can move a cut without touching code (and the reason texts quote the cut in
force)."""

from __future__ import annotations

from pydantic import Field, model_validator

from features.settings import Section


class ValueConfig(Section):
    """The customer value score (0-100) and its tiers."""

    arr_weight: float = Field(0.5, ge=0)
    """Contract size: the account's ARR as its percentile rank in the portfolio."""
    growth_weight: float = Field(0.3, ge=0)
    """Growth potential: the expansion probability at the longest horizon."""
    reference_weight: float = Field(0.2, ge=0)
    """Reference value: promoter NPS and advocacy touchpoints (where the data has them)."""
    promoter_nps: float = Field(9.0, ge=0, le=10)
    """An NPS at or above this makes a promoter (full reference value from NPS)."""
    passive_nps: float = Field(7.0, ge=0, le=10)
    """An NPS at or above this (below `promoter_nps`) is a passive: half the reference value."""
    advocacy_column: str | None = None
    """A feature column counting advocacy touchpoints (references given, case studies); None
    when the data has none, and the reference value then rests on NPS alone."""
    advocacy_full_at: float = Field(2.0, gt=0)
    """Advocacy touchpoints that give full advocacy value."""
    strategic_min: float = Field(80.0, ge=0, le=100)
    """Value score from which an account is Strategic."""
    high_value_min: float = Field(60.0, ge=0, le=100)
    """Value score from which an account is High Value (below: Standard)."""

    @model_validator(mode="after")
    def _ordered(self) -> ValueConfig:
        if self.high_value_min > self.strategic_min:
            raise ValueError("portfolio.value: high_value_min must not exceed strategic_min")
        if self.passive_nps > self.promoter_nps:
            raise ValueError("portfolio.value: passive_nps must not exceed promoter_nps")
        if self.arr_weight + self.growth_weight + self.reference_weight <= 0:
            raise ValueError("portfolio.value: at least one weight must be positive")
        return self


class SegmentConfig(Section):
    """The health-segment classes: Dormant, At Risk, Strategic, High Value, Growing."""

    dormant_days: float = Field(30.0, gt=0)
    """No product activity for at least this many days: Dormant."""
    at_risk_statuses: tuple[str, ...] = ("at-risk", "critical")
    """Health statuses that make an account At Risk."""
    at_risk_churn: float = Field(0.5, gt=0, le=1)
    """A churn probability (longest horizon) at or above this makes an account At Risk."""
    growing_usage_pct: float = 15.0
    """Product events up at least this many percent (30 days against the 30 before): Growing."""
    growing_expansion: float = Field(0.3, gt=0, le=1)
    """An expansion probability at or above this makes an account Growing."""


class RfmConfig(Section):
    """Recency, frequency and monetary scores (1-5 on the portfolio's quintiles)."""

    recency_column: str = "days_since_last_activity"
    """Days since the last engagement (product activity)."""
    frequency_column: str = "active_days_30d"
    """Engagement per 30 days (days with activity in the last 30)."""
    monetary_column: str = "arr"
    segments: tuple[tuple[str, str, str], ...] = (
        ("Champions", "5", "45"),
        ("Loyal", "34", "45"),
        ("Potential Loyalists", "45", "23"),
        ("New Customers", "5", "1"),
        ("Promising", "4", "1"),
        ("Need Attention", "3", "3"),
        ("About To Sleep", "3", "12"),
        ("Can't Lose Them", "12", "5"),
        ("At Risk", "12", "34"),
        ("Hibernating", "12", "12"),
    )
    """(name, recency scores, frequency-monetary scores): the first rule whose R score and
    FM score (the mean of F and M, rounded half up) are among its digits names the segment;
    the standard RFM map. An account no rule matches is `Others`."""

    @model_validator(mode="after")
    def _covers(self) -> RfmConfig:
        for name, r, fm in self.segments:
            if not name or not set(r + fm) <= set("12345") or not r or not fm:
                raise ValueError(f"portfolio.rfm.segments: {name!r} needs digits 1-5 for R "
                                 f"and FM, got {r!r}, {fm!r}")
        return self


class LifecycleConfig(Section):
    """Lifecycle stages: Onboarding, At-Risk, Renewal, Growth, Mature (first match wins)."""

    onboarding_days: float = Field(90.0, ge=0)
    """Tenure below this: Onboarding."""
    at_risk_bands: tuple[str, ...] = ("At Risk",)
    """Health bands that make an account At-Risk."""
    at_risk_statuses: tuple[str, ...] = ("critical",)
    """Health statuses that make an account At-Risk."""
    at_risk_usage_pct: float = -40.0
    """Product events down at least this much (percent, 30 days against the 30 before):
    At-Risk."""
    renewal_days: float = Field(90.0, ge=0)
    """A renewal date within this many days: Renewal."""
    renewal_min_term_days: float = Field(180.0, ge=0)
    """Only contracts at least this long make a Renewal stage (a monthly plan is always
    within a month of its end date)."""
    growth_usage_pct: float = 10.0
    """Product events up at least this many percent: Growth."""
    growth_tenure_days: float = Field(365.0, ge=0)
    """Tenure below this (after onboarding) is still Growth; from it on, Mature."""


class AnomalyConfig(Section):
    """The usage anomaly detector (scoring/anomalies.py) and its alerts."""

    metrics: tuple[str, ...] = ("events", "active_users")
    """Daily usage metrics watched: product events and distinct active users."""
    window_days: int = Field(7, ge=1, le=28)
    """The recent window judged against the account's own weekday pattern."""
    history_weeks: int = Field(4, ge=3, le=52)
    """Weeks before the window the weekday profile (median and MAD per weekday) is built on:
    four follow an account's level closely (health drifts over weeks) while the median of four
    still ignores one unusual week."""
    z_threshold: float = Field(4.0, gt=0)
    """The window's total is unusual when its tail probability under the account's own count
    model (negative binomial around the expected total, see `min_dispersion`) is beyond this
    many standard normal deviations (4: about 3 in 100,000, one side). The world's own
    declines (a champion leaving, a usage cut) are real drops too: a lower cut alerts on more
    of them, not on noise (3.5 took precision on injected anomalies from 0.85 to 0.77)."""
    min_drop: float = Field(0.8, gt=0, le=1)
    """A drop must also lose at least this share of the expected total."""
    min_spike: float = Field(2.5, gt=0)
    """A spike must also exceed the expected total by at least this share (2.5: three and a
    half times): a new use case lifts an account's usage two- or threefold without anything
    being wrong."""
    min_drop_events: float = Field(5.0, ge=0)
    """A drop must also miss at least this many events (or active user-days)."""
    min_spike_events: float = Field(20.0, ge=0)
    """A spike must also add at least this many: a tiny account's handful is no alert."""
    min_expected: float = Field(0.0, ge=0)
    """Windows expecting fewer than this are not judged (0: every account is; the count test
    itself says when a small count cannot be unusual)."""
    min_rate: float = Field(0.5, gt=0)
    """The expected total is at least this: an account silent through its history is not
    'infinitely' unusual for its first event."""
    min_dispersion: float = Field(0.03, gt=0)
    """Least over-dispersion of the count model (variance = mean + this x mean squared): the
    level of an account drifts with its health, so even a steady account's week may move by
    a sixth (sqrt 0.03 ~ 0.17) without anything being wrong."""
    max_dispersion: float = Field(0.3, gt=0)
    """Most over-dispersion taken from an account's own weeks (four weeks say little)."""
    common_min_expected: float = Field(30.0, ge=0)
    """Only accounts expecting at least this many in the window set the portfolio's common
    factor (the ratios of small counts are mostly noise)."""
    min_history_days: int = Field(21, ge=7)
    """Days of history an account needs before it is judged (a new account has no pattern)."""
    min_history_weeks: int = Field(2, ge=1)
    """Whole weeks (every day a customer) the history needs for the expected total."""
    cooldown_hours: float = Field(72.0, ge=0)
    """After an anomaly alert of an account and metric is resolved, no new one for this
    long."""
    severity_drop: str = "high"
    severity_spike: str = "medium"


class PortfolioConfig(Section):
    value: ValueConfig = ValueConfig()
    segments: SegmentConfig = SegmentConfig()
    rfm: RfmConfig = RfmConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    anomalies: AnomalyConfig = AnomalyConfig()
