"""The feature registry: every feature HealthScore builds, declared once.

Each entry says what a feature means to a person (description, unit), which health dimension it
belongs to, its window and kind (the fight-churn vocabulary) and its direction: is a higher value
healthier? The rules score normalises features by it, explanations word factors from it, and a
test checks the built frame against it. Two families are generated from the data at build time:
- custom account attributes, as `attr_<column>` features of kind `attribute` and dimension
  `profile` (a date attribute as `attr_days_since_<column>`, kind `days_since`);
- the customer's own event types (`usage_events.event`), as `event_<slug>_<measure>` features
  of the usage dimension (`EVENT_MEASURES`). Their direction is None: whether more of a type is
  healthier is what a model learns from the customer's data, not something the product knows, so
  the rules score never scores them and no monotone constraint binds them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Dimension = Literal[
    "engagement", "usage", "adoption", "support", "satisfaction", "commercial", "relationship",
    "profile",
]
Kind = Literal[
    "count", "rate", "ratio", "pct_change", "change", "days_since", "days_until", "tenure",
    "mean", "last", "flag", "amount", "category", "attribute",
]

DIMENSIONS: tuple[Dimension, ...] = (
    "engagement", "usage", "adoption", "support", "satisfaction", "commercial", "relationship",
    "profile",
)
# The source table each dimension's features read: when it is not connected, they are missing.
DIMENSION_SOURCES: dict[str, tuple[str, ...]] = {
    "engagement": ("usage_events",),
    "usage": ("usage_events",),
    "adoption": ("usage_events",),
    "support": ("tickets",),
    "satisfaction": ("surveys",),
    "commercial": ("subscriptions", "invoices"),
    "relationship": ("touchpoints",),
    "profile": ("accounts",),
}

FEATURE_SET_VERSION = "2"
"""Bump when a definition changes meaning: models record it and refuse a mismatch."""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dimension: Dimension
    kind: Kind
    source: str
    """Contract table the feature reads."""
    higher_is_healthier: bool | None
    """None for neutral descriptors (segment, seats)."""
    unit: str
    description: str
    window: int | None = None
    """Look-back window in days ending just before as_of; None for point-in-time states."""
    dtype: Literal["float", "category"] = "float"
    actionable: bool = False
    """A CSM can change it (what-if may move it); tenure and segment are not actionable."""


def _f(name: str, dimension: Dimension, kind: Kind, source: str, better: bool | None, unit: str,
       description: str, window: int | None = None, *,
       dtype: Literal["float", "category"] = "float", actionable: bool = False) -> FeatureSpec:
    return FeatureSpec(name, dimension, kind, source, better, unit, description, window, dtype,
                       actionable)


USAGE, TICKETS, SURVEYS, TOUCHPOINTS = "usage_events", "tickets", "surveys", "touchpoints"
INVOICES, SUBSCRIPTIONS, ACCOUNTS = "invoices", "subscriptions", "accounts"

FEATURES: tuple[FeatureSpec, ...] = (
    # engagement: who shows up
    _f("active_users_7d", "engagement", "count", USAGE, True, "users",
       "Distinct users active in the last 7 days", 7, actionable=True),
    _f("active_users_30d", "engagement", "count", USAGE, True, "users",
       "Distinct users active in the last 30 days", 30, actionable=True),
    _f("active_users_90d", "engagement", "count", USAGE, True, "users",
       "Distinct users active in the last 90 days", 90, actionable=True),
    _f("active_user_ratio_30d", "engagement", "ratio", USAGE, True, "share of seats",
       "Active users in the last 30 days per contracted seat", 30, actionable=True),
    _f("logins_30d", "engagement", "count", USAGE, True, "user-days",
       "User-days with any activity in the last 30 days (logins)", 30, actionable=True),
    _f("logins_pct_change_30d", "engagement", "pct_change", USAGE, True, "%",
       "Change in logins, last 30 days against the 30 days before", 30, actionable=True),
    _f("active_days_30d", "engagement", "count", USAGE, True, "days",
       "Days with any activity in the last 30 days", 30, actionable=True),
    _f("days_since_last_activity", "engagement", "days_since", USAGE, False, "days",
       "Days since any user was last active", actionable=True),
    # usage: how much they use it
    _f("events_7d", "usage", "count", USAGE, True, "events",
       "Product events in the last 7 days", 7, actionable=True),
    _f("events_30d", "usage", "count", USAGE, True, "events",
       "Product events in the last 30 days", 30, actionable=True),
    _f("events_90d", "usage", "count", USAGE, True, "events",
       "Product events in the last 90 days", 90, actionable=True),
    _f("events_per_seat_30d", "usage", "rate", USAGE, True, "events per seat",
       "Product events in the last 30 days per contracted seat", 30, actionable=True),
    _f("events_pct_change_30d", "usage", "pct_change", USAGE, True, "%",
       "Change in product events, last 30 days against the 30 days before", 30,
       actionable=True),
    # adoption: how much of the product they use
    _f("features_used_30d", "adoption", "count", USAGE, True, "features",
       "Distinct product features used in the last 30 days", 30, actionable=True),
    _f("features_used_90d", "adoption", "count", USAGE, True, "features",
       "Distinct product features used in the last 90 days", 90, actionable=True),
    _f("features_used_change_30d", "adoption", "change", USAGE, True, "features",
       "Change in distinct features used, last 30 days against the 30 days before", 30,
       actionable=True),
    # support
    _f("tickets_30d", "support", "count", TICKETS, False, "tickets",
       "Support tickets opened in the last 30 days", 30, actionable=True),
    _f("tickets_90d", "support", "count", TICKETS, False, "tickets",
       "Support tickets opened in the last 90 days", 90, actionable=True),
    _f("tickets_pct_change_30d", "support", "pct_change", TICKETS, False, "%",
       "Change in tickets opened, last 30 days against the 30 days before", 30,
       actionable=True),
    _f("urgent_tickets_90d", "support", "count", TICKETS, False, "tickets",
       "High or urgent priority tickets opened in the last 90 days", 90, actionable=True),
    _f("escalations_90d", "support", "count", TICKETS, False, "tickets",
       "Escalated tickets opened in the last 90 days", 90, actionable=True),
    _f("reopened_tickets_90d", "support", "count", TICKETS, False, "tickets",
       "Reopened tickets opened in the last 90 days", 90, actionable=True),
    _f("open_tickets", "support", "count", TICKETS, False, "tickets",
       "Tickets open at the as-of date", actionable=True),
    _f("median_resolution_hours_90d", "support", "mean", TICKETS, False, "hours",
       "Median hours to resolve tickets opened and resolved in the last 90 days", 90),
    _f("ticket_csat_90d", "support", "mean", TICKETS, True, "CSAT 1-5",
       "Mean CSAT of tickets opened in the last 90 days and resolved before the as-of date",
       90),
    _f("ticket_sentiment_90d", "support", "mean", TICKETS, True, "sentiment -1..1",
       "Mean ticket sentiment in the last 90 days", 90),
    _f("days_since_last_ticket", "support", "days_since", TICKETS, True, "days",
       "Days since the last ticket was opened"),
    # satisfaction
    _f("nps_last", "satisfaction", "last", SURVEYS, True, "NPS 0-10",
       "Most recent NPS response"),
    _f("nps_avg_365d", "satisfaction", "mean", SURVEYS, True, "NPS 0-10",
       "Mean NPS response in the last 365 days", 365),
    _f("csat_avg_90d", "satisfaction", "mean", SURVEYS, True, "CSAT 1-5",
       "Mean CSAT survey response in the last 90 days", 90),
    _f("survey_responses_90d", "satisfaction", "count", SURVEYS, True, "responses",
       "Survey responses in the last 90 days", 90),
    _f("days_since_last_survey", "satisfaction", "days_since", SURVEYS, False, "days",
       "Days since the last survey response"),
    # commercial
    _f("arr", "commercial", "amount", SUBSCRIPTIONS, None, "ARR",
       "ARR of the subscriptions active at the as-of date"),
    _f("arr_pct_change_90d", "commercial", "pct_change", SUBSCRIPTIONS, True, "%",
       "Change in active ARR against 90 days earlier", 90),
    _f("subscription_seats", "commercial", "count", SUBSCRIPTIONS, None, "seats",
       "Seats of the subscriptions active at the as-of date"),
    _f("days_to_renewal", "commercial", "days_until", SUBSCRIPTIONS, True, "days",
       "Days until the earliest end date of an active subscription"),
    _f("contract_term_days", "commercial", "amount", SUBSCRIPTIONS, None, "days",
       "Term of the active subscription that ends first: days from its start to its end"),
    _f("auto_renew", "commercial", "flag", SUBSCRIPTIONS, True, "yes/no",
       "An active subscription renews automatically"),
    _f("failed_payments_90d", "commercial", "count", INVOICES, False, "invoices",
       "Invoices issued in the last 90 days, due before the as-of date, whose payment failed",
       90, actionable=True),
    _f("overdue_invoices", "commercial", "count", INVOICES, False, "invoices",
       "Invoices past due and unpaid at the as-of date", actionable=True),
    # relationship
    _f("touchpoints_30d", "relationship", "count", TOUCHPOINTS, True, "touchpoints",
       "Meetings, calls, QBRs and emails in the last 30 days", 30, actionable=True),
    _f("touchpoints_90d", "relationship", "count", TOUCHPOINTS, True, "touchpoints",
       "Meetings, calls, QBRs and emails in the last 90 days", 90, actionable=True),
    _f("exec_touches_90d", "relationship", "count", TOUCHPOINTS, True, "touchpoints",
       "Touchpoints with an executive in the last 90 days", 90, actionable=True),
    _f("days_since_last_exec_touch", "relationship", "days_since", TOUCHPOINTS, False, "days",
       "Days since the last touchpoint with an executive", actionable=True),
    _f("days_since_last_touch", "relationship", "days_since", TOUCHPOINTS, False, "days",
       "Days since the last touchpoint of any kind", actionable=True),
    _f("response_rate_90d", "relationship", "ratio", TOUCHPOINTS, True, "share",
       "Share of outbound touchpoints in the last 90 days the customer responded to (of those "
       "with a known response)", 90,
       actionable=True),
    # profile: who the customer is (not scored by the rules, used by models and peers)
    _f("tenure_days", "profile", "tenure", ACCOUNTS, None, "days",
       "Days since the account signed up"),
    _f("seats", "profile", "count", ACCOUNTS, None, "seats", "Contracted seats on the account"),
    _f("segment", "profile", "category", ACCOUNTS, None, "", "Customer segment", dtype="category"),
    _f("industry", "profile", "category", ACCOUNTS, None, "", "Industry", dtype="category"),
    _f("region", "profile", "category", ACCOUNTS, None, "", "Region", dtype="category"),
    _f("plan", "profile", "category", ACCOUNTS, None, "", "Plan", dtype="category"),
)

FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES_BY_NAME)
ENTITY_COLUMNS: tuple[str, str] = ("account_id", "as_of")


def datetimes(col: pd.Series) -> pd.Series:
    """pd.to_datetime, skipped for a column that holds datetimes already (as built and as
    callers pass `as_of`): on a one-row frame its parsing machinery is most of the cost."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind == "M":
        return col
    return pd.to_datetime(col)


# --- generated families: custom attributes and event types -----------------------------------
ATTRIBUTE_PREFIX = "attr_"
DAYS_SINCE_ATTRIBUTE = "days_since_"
"""`attr_days_since_<column>`: a date attribute, as days from the date to as_of."""
EVENT_TYPE_PREFIX = "event_"


@dataclass(frozen=True)
class EventMeasure:
    """One feature built for every event type: `event_<slug>_<suffix>`."""

    suffix: str
    kind: Kind
    window: int
    unit: str
    text: str
    """Its description, `{name}` the event type's name."""


EVENT_MEASURES: tuple[EventMeasure, ...] = (
    EventMeasure("7d", "count", 7, "events", "{name} events in the last 7 days"),
    EventMeasure("30d", "count", 30, "events", "{name} events in the last 30 days"),
    EventMeasure("90d", "count", 90, "events", "{name} events in the last 90 days"),
    EventMeasure("per_active_day_30d", "rate", 30, "events per active day",
                 "{name} events per active day in the last 30 days"),
    EventMeasure("share_30d", "ratio", 30, "share of events",
                 "Share of the last 30 days' product events that are {name}"),
    EventMeasure("change_30d", "change", 30, "events",
                 "Change in {name} events, last 30 days against the 30 days before"),
)
# Longest suffix first, so `_per_active_day_30d` is not read as a `_30d` count.
_MEASURES_BY_SUFFIX = sorted(EVENT_MEASURES, key=lambda m: -len(m.suffix))
_SLUG_RUN = re.compile(r"[^a-z0-9]+")


def event_slug(event: str) -> str:
    """The safe name stem of an event type: lower case, every run of other characters one
    `_` (`billing.Downgrade-Viewed` -> `billing_downgrade_viewed`). Two names that slug alike
    are one type."""
    return _SLUG_RUN.sub("_", event.lower()).strip("_") or "unnamed"


def event_type_words(slug: str) -> str:
    """How wording names an event type: its slug read as words (`report export`)."""
    return slug.replace("_", " ")


def event_feature_name(slug: str, measure: EventMeasure) -> str:
    return f"{EVENT_TYPE_PREFIX}{slug}_{measure.suffix}"


def event_type_features(slug: str) -> tuple[FeatureSpec, ...]:
    """The registered features of one event type, in `EVENT_MEASURES` order."""
    return tuple(_event_spec(slug, m) for m in EVENT_MEASURES)


def event_type_slugs(names: Sequence[str]) -> tuple[str, ...]:
    """The event types whose features `names` hold (a model's feature list), in order of
    appearance. A type's `_90d` count names it unambiguously (no other measure's name ends so);
    any other `event_*` name not of those types is read by its measure's suffix."""
    marker = "_" + EVENT_MEASURES[2].suffix
    slugs = dict.fromkeys(n[len(EVENT_TYPE_PREFIX):-len(marker)] for n in names
                          if n.startswith(EVENT_TYPE_PREFIX) and n.endswith(marker))
    covered = {f.name for slug in slugs for f in event_type_features(slug)}
    for n in names:
        parsed = _parse_event(n) if n not in covered else None
        if parsed is not None:
            slugs.setdefault(parsed[0])
    return tuple(slugs)


def _parse_event(name: str) -> tuple[str, EventMeasure] | None:
    if not name.startswith(EVENT_TYPE_PREFIX):
        return None
    for m in _MEASURES_BY_SUFFIX:
        slug = name[len(EVENT_TYPE_PREFIX):-len(m.suffix) - 1]
        if name.endswith("_" + m.suffix) and slug:
            return slug, m
    return None


def _event_spec(slug: str, m: EventMeasure) -> FeatureSpec:
    words = event_type_words(slug)
    text = m.text.format(name=f"'{words}'")
    return FeatureSpec(event_feature_name(slug, m), "usage", m.kind, USAGE, None, m.unit,
                       text[0].upper() + text[1:], m.window, actionable=True)


def feature(name: str) -> FeatureSpec:
    """Look a feature up, including the generated ones: custom `attr_*` attributes (neutral,
    profile) and `event_*` event types (neutral, usage)."""
    if name in FEATURES_BY_NAME:
        return FEATURES_BY_NAME[name]
    if name.startswith(ATTRIBUTE_PREFIX + DAYS_SINCE_ATTRIBUTE):
        column = name[len(ATTRIBUTE_PREFIX + DAYS_SINCE_ATTRIBUTE):]
        return FeatureSpec(name, "profile", "days_since", "accounts", None, "days",
                           f"Days since {column} (custom attribute)")
    if name.startswith(ATTRIBUTE_PREFIX):
        return FeatureSpec(name, "profile", "attribute", "accounts", None, "",
                           f"Custom attribute {name[len(ATTRIBUTE_PREFIX):]}")
    parsed = _parse_event(name)
    if parsed is not None:
        return _event_spec(*parsed)
    raise KeyError(f"unknown feature {name!r}")


def by_dimension(dimension: str) -> tuple[FeatureSpec, ...]:
    return tuple(f for f in FEATURES if f.dimension == dimension)
