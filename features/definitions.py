"""Every registered feature, defined once as an Ibis expression (engine-portable).

This module owns the *meaning* of each feature in `features/registry.py`: one grouped
aggregation per source table, written with Ibis's expression API only (no SQL strings, no
backend-specific functions), so the same definitions run on DuckDB, on SQLite (the online
path, `features/sqlite_engine.py`) and on PySpark by swapping the backend. It builds
expressions and never executes them: `features/build.py` owns the connection, the entity frame,
execution and dtypes.

Shape of every definition: the source is first restricted to the entity accounts and their
overall time range (`restrict`), then the entity table (`_eid`, `account_id`, `as_of`) is joined
to it on `account_id` with `time < as_of` (and `time >= as_of - lookback` where the table's
features look back a bounded window), then conditional aggregates per window, then a left join
back to the entities so each definition yields exactly one row per entity. Usage, the big table,
needs no window function and no COUNT(DISTINCT): a distinct count is a count of the keys (users,
features) aggregated per entity first (see `usage_features`).

Time rules (point in time)
- `as_of` is a date at midnight; a window of N days is `[as_of - N days, as_of)`. A row dated
  exactly at `as_of` is in the future. "The 30 days before" is `[as_of - 60d, as_of - 30d)`.
- Who is a customer at `as_of` is decided by `features/entities.py` (`status_at`): an account
  is active when created on or before the as-of day and not churned on or before it. The one
  value of the as-of day a feature reads is that the account exists: tenure_days is 0 for an
  account created that day.
- Point-in-time states (open_tickets, overdue_invoices, arr, subscription_seats,
  days_to_renewal, contract_term_days, auto_renew) use only rows whose time column is
  `< as_of`; a later-dated value of such a row (resolved_at, paid_at) that is `>= as_of` is not
  yet known: a ticket resolved at or after `as_of` is open at `as_of`, an invoice paid at or
  after `as_of` is unpaid.
- A subscription is active at t when `start_date < t` and (`end_date` is empty or `>= t`). Its
  end date is known when the contract starts, so days_to_renewal and contract_term_days (days
  from start to end of the active subscription that ends first, the one days_to_renewal counts
  down to) may read an end date `>= as_of`. Both are NaN without an active dated subscription.
- Undated state columns are read only once they can be known: a ticket's CSAT only once the
  ticket is resolved before `as_of` (CSAT is asked at resolution); an invoice's `failed` status
  only once the invoice is due before `as_of` (the payment attempt happens by the due date).
  `escalated`, `reopened` and `responded` carry no date of their own: they are read as of the
  ticket's or touchpoint's own date (a known limit of the contract).
- Status columns that describe today (subscriptions.status, invoices.status apart from the
  above) are never used: activity is decided by dates.
- Days are calendar days: days_since = days from the event's date to as_of (an event the day
  before as_of is 1); days_until = days from as_of to the end date (0 on the as-of day).

Missing semantics (the rules score treats missing as missing, not 0)
- A source table that is not connected: all its features are NaN (handled in build.py).
- Counts (and sums of counts: events, logins, arr, seats) over a connected table with no rows in
  the window are 0.
- Means, medians, `last` values and ratios with no rows in the window are NaN.
- days_since with no prior event at all is NaN (it looks back over the whole history, not only
  the longest window). days_to_renewal with no active dated subscription is NaN.
- pct_change = 100 * (current - previous) / previous, in percent; NaN when previous == 0 (also
  when both are 0: "no change from nothing" is not a 0 % change). change = current - previous.
- Ratios per seat divide by the contracted seats at as_of: seats of the subscriptions active at
  as_of when that is > 0, else accounts.seats; NaN when neither is known or it is 0.
- auto_renew = 1 when an active subscription renews automatically, 0 when active subscriptions
  exist and none is known to, NaN without an active subscription or when unknown.
- subscription_seats = 0 without an active subscription; NaN when active subscriptions exist
  but none states its seats.
- tenure_days is 0 for an account created on the as-of day and NaN for one created after it
  (not yet a customer, `features/entities.py`).
- Event types (`usage_events.event`, the types `features.event_types` chose): a type's counts
  are its summed quantities (as `events_*`), 0 without rows; per active day divides the 30 days'
  count by active_days_30d and share by events_30d, both NaN when that is 0; change is the 30
  days' count minus the 30 days before's.
- A date custom attribute is `attr_days_since_<column>`: days from the date to as_of, NaN for a
  date on or after as_of (a future date is not a "days since").
- Optional contract columns absent from a table read as their contract default (quantity 1,
  escalated/reopened/executive false) or unknown (csat, sentiment, responded, auto_renew).
- Usage without user ids (usage_events.user_id absent, or empty in every row): the features
  counting users (active_users_*, active_user_ratio_30d, logins_*) are NaN, not a constant;
  the other usage features are unchanged. A row without a user id counts as usage, not as a
  user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from features.contract.tables import table as contract_table
from features.event_types import EventType
from features.registry import (
    DAYS_SINCE_ATTRIBUTE,
    EVENT_MEASURES,
    FEATURES,
    event_feature_name,
)

ENTITY_KEY = "_eid"
"""Integer key of one distinct (account_id, as_of) entity row."""

USAGE_LOOKBACK_DAYS = 90
"""Longest usage window: usage features scan only this far back (days_since has a fallback)."""


def days(n: int) -> ir.IntervalScalar:
    return ibis.interval(days=n)


def _in_last(ts: ir.TimestampValue, as_of: ir.TimestampValue, n: int) -> ir.BooleanValue:
    """`ts` in `[as_of - n days, as_of)`, given the join already guarantees `ts < as_of`."""
    return ts >= as_of - days(n)


def _in_previous(ts: ir.TimestampValue, as_of: ir.TimestampValue, n: int) -> ir.BooleanValue:
    """`ts` in the n days before the last n: `[as_of - 2n days, as_of - n days)`."""
    return (ts >= as_of - days(2 * n)) & (ts < as_of - days(n))


def _days_between(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    # Calendar days on dates: portable (Spark's timestamp difference counts whole 24 h periods).
    return later.date().delta(earlier.date(), unit="day")


def _pct_change(current: ir.NumericValue, previous: ir.NumericValue) -> ir.FloatingValue:
    # In floating point on every engine: Spark reads the literal 100.0 as a DECIMAL and would
    # compute integer counts' changes in decimal arithmetic, rounded to its scale.
    current, previous = current.cast("float64"), previous.cast("float64")
    return (current - previous) * 100.0 / previous.nullif(0)


def _count(col: ir.Column, where: ir.BooleanValue | None = None) -> ir.IntegerScalar:
    return col.count(where=where)


def _zero(value: ir.Value) -> ir.Value:
    return value.fill_null(0)


def _optional(t: ir.Table, name: str, dtype: str, default: Any = None) -> ir.Value:
    """An optional contract column, or its default (None: unknown) when the table lacks it."""
    if name in t.columns:
        col = t[name].cast(dtype)
        return col.fill_null(default) if default is not None else col
    return ibis.literal(default, type=dtype)


# --- entities and sources ---------------------------------------------------------------------
def restrict(
    source: ir.Table,
    ent: ir.Table,
    account_ids: Sequence[str] | None,
    *,
    literal_max: int = 0,
    time_column: str | None = None,
    lookback_days: int | None = None,
    before_lookback: bool = False,
    as_of_range: tuple[Any, Any] | None = None,
) -> ir.Table:
    """The rows of `source` that any entity can see, selected before any join or aggregation.

    Accounts: a short list is filtered with a literal IN list; a long one, or
    `account_ids=None`, with a semi join on the entity table. Time: rows dated before the
    latest as_of (and, with `lookback_days`, not before the earliest as_of minus it), bounds
    taken from the entity table itself, so the expression holds no per-request literal and
    its compiled form can be reused; the engine turns the one-row bounds into a filter on the
    scan. `before_lookback`: only the rows older than the usage lookback (days_since fallback).
    `as_of_range` (earliest, latest as_of), when given, puts the same bounds in as literals
    (or as scalar expressions: statement parameters, `features/duckdb_sql.py`) instead: a
    bound the engine knows before it plans prunes the scan before anything is read.
    """
    if account_ids is not None and len(account_ids) <= literal_max:
        cond = source.account_id.isin(list(account_ids))
    else:
        cond = source.account_id.isin(ent.account_id)
    out = source.filter(cond)
    if time_column is None:
        return out
    if as_of_range is not None:
        earliest, latest = (b if isinstance(b, ir.Value) else ibis.literal(b, type="timestamp")
                            for b in as_of_range)
    else:
        earliest, latest = ent.as_of.min(), ent.as_of.max()
    since = None
    if before_lookback:
        before = latest - days(USAGE_LOOKBACK_DAYS)
    else:
        before = latest
        if lookback_days is not None:
            since = earliest - days(lookback_days)
    if as_of_range is None:
        bounds = ent.aggregate(
            _before=before, **({"_since": since} if since is not None else {})
        )
        out = out.cross_join(bounds)
        before, since = out._before, (out._since if since is not None else None)
    keep = out[time_column] < before
    if since is not None:
        keep &= out[time_column] >= since
    return out.filter(keep).select(*source.columns)


def _window_join(
    ent: ir.Table, src: ir.Table, ts: str, lookback_days: int | None, cols: Sequence[str]
) -> ir.Table:
    """Entities joined to the source rows dated before as_of (and within the lookback)."""
    preds = [ent.account_id == src.account_id, src[ts] < ent.as_of]
    if lookback_days is not None:
        preds.append(src[ts] >= ent.as_of - days(lookback_days))
    return ent.join(src, preds).select(
        ent[ENTITY_KEY], ent.account_id, ent.as_of, *[src[c] for c in dict.fromkeys([ts, *cols])]
    )


def attach(left: ir.Table, agg: ir.Table) -> ir.Table:
    """Left-join an aggregation keyed by `_eid` to the entity-level `left`: one row per entity."""
    keep = [c for c in agg.columns if c not in left.columns]
    return left.left_join(agg, left[ENTITY_KEY] == agg[ENTITY_KEY]).select(
        *[left[c] for c in left.columns], *[agg[c] for c in keep]
    )


# --- usage: engagement, usage, adoption -------------------------------------------------------
def usage_features(ent: ir.Table, usage: ir.Table, seats: ir.Table,
                   types: Sequence[EventType] = ()) -> ir.Table:
    """Engagement, usage and adoption features from usage_events.

    No window function and no COUNT(DISTINCT): a distinct count over a window is a count of
    keys with a row in it, so each key (user, feature) is first aggregated per entity, then
    counted per entity. Two paths over the rows:
    - users: the rows rolled up to one per (account, user, day) (what logins count), joined
      to the entities whose window holds the day, then per (entity, user) the days in each
      window, then per entity the users with a day in it and the sum of their days;
    - events: the rows themselves joined to the entities, per (entity, feature) the events and
      days in each window, then per entity the features with a day in it, the events of every
      window (all features, and each event type's) and the latest event.
    Active days are the (account, day) keys of the rows in the 30 days. Days are compared
    as dates; as_of is a midnight, so `day < as_of` is the same test as `ts < as_of`.

    `types`: the event types with features of their own (`event_type_features`).
    """
    # The window starts as dates on the entity rows, computed once per entity: compared with
    # a row's day as they are, not as date arithmetic on every joined row.
    e0 = ent.mutate(as_day=ent.as_of.date(),
                    **{_since(n): (ent.as_of - days(n)).date() for n in _USAGE_STARTS})
    # Without user ids (the column absent: build.py also leaves out one with no value at all)
    # the features counting users are missing; a row without a user still counts as usage.
    has_users = "user_id" in usage.columns
    u = usage.select(
        "account_id",
        "event",
        "ts",
        user_id=_optional(usage, "user_id", "string"),
        quantity=_optional(usage, "quantity", "float64", 1.0),
        day=usage.ts.date(),
    )

    def joined(src: ir.Table, lookback: int, cols: Sequence[str]) -> ir.Table:
        return e0.join(
            src,
            [
                e0.account_id == src.account_id,
                src.day < e0.as_day,
                src.day >= e0[_since(lookback)],
            ],
        ).select(e0[ENTITY_KEY], *[e0[_since(n)] for n in _USAGE_STARTS], src.day,
                 *[src[c] for c in cols])

    def windows(j: ir.Table) -> dict[str, ir.BooleanValue]:
        """Which of the usage windows hold a joined row's day (all of them: the 90 days)."""
        d = j.day
        return {"7d": d >= j[_since(7)], "30d": d >= j[_since(30)],
                "prev": (d >= j[_since(60)]) & (d < j[_since(30)])}

    user_days = u.select("account_id", "user_id", "day").distinct()
    ju = joined(user_days.filter(user_days.user_id.notnull()), USAGE_LOOKBACK_DAYS,
                ["user_id"])
    w = windows(ju)
    # One row per user-day: counting a user's rows counts its days in the window (logins).
    per_user = ju.group_by([ENTITY_KEY, "user_id"]).aggregate(
        **{f"days_{k}": _count(ju.day, v) for k, v in w.items()})
    users = per_user.group_by(ENTITY_KEY).aggregate(
        active_users_7d=_count(per_user.days_7d, per_user.days_7d > 0),
        active_users_30d=_count(per_user.days_30d, per_user.days_30d > 0),
        active_users_90d=_count(per_user.days_30d),
        logins_30d=per_user.days_30d.sum(),
        logins_prev=per_user.days_prev.sum(),
    )

    account_days = u.select("account_id", "day").distinct()
    jd = joined(account_days, 30, [])
    active_days = jd.group_by([ENTITY_KEY]).aggregate(active_days_30d=_count(jd.day))

    je = joined(u, USAGE_LOOKBACK_DAYS, ["event", "quantity", "ts"])
    w = windows(je)
    per_event = je.group_by([ENTITY_KEY, "event"]).aggregate(
        **{f"events_{k}": je.quantity.sum(where=v) for k, v in w.items()},
        events_90d=je.quantity.sum(),
        days_30d=_count(je.day, w["30d"]),
        days_prev=_count(je.day, w["prev"]),
        last_ts=je.ts.max(),
    )
    p = per_event
    used = p.group_by(ENTITY_KEY).aggregate(
        # Every (entity, feature) row has a day in the 90 days; a feature is a distinct
        # `event` value (a row without one is its own).
        features_used_30d=_count(p.days_30d, p.days_30d > 0),
        features_used_prev=_count(p.days_prev, p.days_prev > 0),
        features_used_90d=_count(p.days_30d),
        **{name: p[name].sum() for name in ("events_7d", "events_30d", "events_prev",
                                            "events_90d")},
        last_ts=p.last_ts.max(),
        **_event_type_sums(p, types),
    )

    e = ent
    for agg in (users, active_days, used, seats):
        e = attach(e, agg)
    seats_den = e.contracted_seats.nullif(0)

    def per_user_value(value: ir.Value) -> ir.Value:
        return value if has_users else ibis.null("float64")

    return e.select(
        ENTITY_KEY,
        "account_id",
        "as_of",
        active_users_7d=per_user_value(_zero(e.active_users_7d)),
        active_users_30d=per_user_value(_zero(e.active_users_30d)),
        active_users_90d=per_user_value(_zero(e.active_users_90d)),
        active_user_ratio_30d=per_user_value(_zero(e.active_users_30d) / seats_den),
        logins_30d=per_user_value(_zero(e.logins_30d)),
        logins_pct_change_30d=per_user_value(
            _pct_change(_zero(e.logins_30d), _zero(e.logins_prev))),
        active_days_30d=_zero(e.active_days_30d),
        days_since_last_activity=_days_between(e.as_of, e.last_ts),
        events_7d=_zero(e.events_7d),
        events_30d=_zero(e.events_30d),
        events_90d=_zero(e.events_90d),
        events_per_seat_30d=_zero(e.events_30d) / seats_den,
        events_pct_change_30d=_pct_change(_zero(e.events_30d), _zero(e.events_prev)),
        features_used_30d=_zero(e.features_used_30d),
        features_used_90d=_zero(e.features_used_90d),
        features_used_change_30d=_zero(e.features_used_30d) - _zero(e.features_used_prev),
        **event_type_features(e, types),
    )


_USAGE_STARTS = (7, 30, 60, USAGE_LOOKBACK_DAYS)
"""Usage windows start this many days before as_of (60: the 30 days before the last 30)."""


def _since(n: int) -> str:
    """The entity column holding the first day of the n days before as_of."""
    return f"_since{n}"


def _event_type_sums(per_event: ir.Table, types: Sequence[EventType]) -> dict[str, ir.Value]:
    """Per entity, each event type's events (summed quantities, as `events_*`) per window and
    in the 30 days before the last 30 (`_et<i>_<window>`, `_et<i>_prev`), summed over the
    entity's (entity, event) rows of the type's names: types absent from the data have none."""
    sums: dict[str, ir.Value] = {}
    for i, t in enumerate(types):
        if not t.names:
            continue
        mine = per_event.event.isin(list(t.names))
        for suffix in ("7d", "30d", "90d", "prev"):
            sums[f"_et{i}_{suffix}"] = per_event[f"events_{suffix}"].sum(where=mine)
    return sums


def event_type_features(e: ir.Table, types: Sequence[EventType]) -> dict[str, ir.Value]:
    """The `event_<slug>_*` columns of the usage frame `e` (which holds `_et*` sums,
    `events_30d` and `active_days_30d`).

    Counts are 0 without events of the type (also for a type the data lacks); per active day
    is the 30 days' count over the account's days with any activity, share is over all its
    events of the 30 days: both NaN when the denominator is 0; change is the 30 days' count
    minus the 30 days before's."""
    out: dict[str, ir.Value] = {}
    all_30d = _zero(e.events_30d).cast("float64").nullif(0)
    active = _zero(e.active_days_30d).cast("float64").nullif(0)
    for i, t in enumerate(types):
        def total(suffix: str, i: int = i, t: EventType = t) -> ir.Value:
            name = f"_et{i}_{suffix}"
            if not t.names or name not in e.columns:
                return ibis.literal(0.0, type="float64")
            return _zero(e[name]).cast("float64")

        values = {
            "7d": total("7d"), "30d": total("30d"), "90d": total("90d"),
            "per_active_day_30d": total("30d") / active,
            "share_30d": total("30d") / all_30d,
            "change_30d": total("30d") - total("prev"),
        }
        for m in EVENT_MEASURES:
            out[event_feature_name(t.slug, m)] = values[m.suffix]
    return out


def usage_last_activity(ent: ir.Table, usage: ir.Table) -> ir.Table:
    """days_since_last_activity for entities with no usage inside the usage lookback.

    The main usage aggregation only scans `USAGE_LOOKBACK_DAYS`; build.py runs this for the few
    entities it left without an activity date, over their older rows only.
    """
    j = ent.join(
        usage,
        [ent.account_id == usage.account_id, usage.ts < ent.as_of - days(USAGE_LOOKBACK_DAYS)],
    ).select(ent[ENTITY_KEY], ent.as_of, usage.ts)
    last = j.group_by([ENTITY_KEY, "as_of"]).aggregate(last_ts=j.ts.max())
    e = attach(ent, last)
    return e.select(
        ENTITY_KEY, days_since_last_activity=_days_between(e.as_of, e.last_ts)
    )


# --- support ----------------------------------------------------------------------------------
def ticket_features(ent: ir.Table, tickets: ir.Table) -> ir.Table:
    t = tickets.select(
        "account_id",
        "created_at",
        "resolved_at",
        "priority",
        escalated=_optional(tickets, "escalated", "boolean", False),
        reopened=_optional(tickets, "reopened", "boolean", False),
        csat=_optional(tickets, "csat", "float64"),
        sentiment=_optional(tickets, "sentiment", "float64"),
    )
    j = _window_join(
        ent, t, "created_at", None,
        ["resolved_at", "priority", "escalated", "reopened", "csat", "sentiment"],
    )
    a, c = j.as_of, j.created_at
    in90 = _in_last(c, a, 90)
    resolved = j.resolved_at.notnull() & (j.resolved_at < a)
    # A float numerator: Spark divides an integer by the literal 3600.0 as DECIMAL, rounded
    # to 6 places.
    hours = (j.resolved_at.epoch_seconds() - c.epoch_seconds()).cast("float64") / 3600.0
    agg = j.group_by([ENTITY_KEY, "as_of"]).aggregate(
        tickets_30d=_count(c, _in_last(c, a, 30)),
        tickets_prev=_count(c, _in_previous(c, a, 30)),
        tickets_90d=_count(c, in90),
        urgent_tickets_90d=_count(c, in90 & j.priority.isin(["high", "urgent"])),
        escalations_90d=_count(c, in90 & j.escalated),
        reopened_tickets_90d=_count(c, in90 & j.reopened),
        open_tickets=_count(c, ~resolved),
        # The filter as a NULL outside it, not `where=`: Spark's percentile takes no filter
        # on its constant fraction (Ibis would put one there); medians skip NULLs everywhere.
        median_resolution_hours_90d=ibis.ifelse(in90 & resolved, hours,
                                                ibis.null("float64")).median(),
        ticket_csat_90d=j.csat.mean(where=in90 & resolved),
        ticket_sentiment_90d=j.sentiment.mean(where=in90),
        last_ts=c.max(),
    )
    e = attach(ent, agg)
    return e.select(
        ENTITY_KEY,
        tickets_30d=_zero(e.tickets_30d),
        tickets_90d=_zero(e.tickets_90d),
        tickets_pct_change_30d=_pct_change(_zero(e.tickets_30d), _zero(e.tickets_prev)),
        urgent_tickets_90d=_zero(e.urgent_tickets_90d),
        escalations_90d=_zero(e.escalations_90d),
        reopened_tickets_90d=_zero(e.reopened_tickets_90d),
        open_tickets=_zero(e.open_tickets),
        median_resolution_hours_90d=e.median_resolution_hours_90d,
        ticket_csat_90d=e.ticket_csat_90d,
        ticket_sentiment_90d=e.ticket_sentiment_90d,
        days_since_last_ticket=_days_between(e.as_of, e.last_ts),
    )


# --- satisfaction -----------------------------------------------------------------------------
def survey_features(ent: ir.Table, surveys: ir.Table) -> ir.Table:
    s = surveys.select("account_id", "ts", "kind", score=surveys.score.cast("float64"))
    j = _window_join(ent, s, "ts", None, ["kind", "score"])
    a, ts = j.as_of, j.ts
    is_nps = j.kind == "nps"
    agg = j.group_by([ENTITY_KEY, "account_id", "as_of"]).aggregate(
        nps_avg_365d=j.score.mean(where=is_nps & _in_last(ts, a, 365)),
        csat_avg_90d=j.score.mean(where=(j.kind == "csat") & _in_last(ts, a, 90)),
        survey_responses_90d=_count(ts, _in_last(ts, a, 90)),
        last_ts=ts.max(),
        last_nps_ts=ts.max(where=is_nps),
    )
    # The latest NPS response; several at the same instant are averaged (deterministic, where
    # arg_max would pick one at the engine's whim).
    nps = s.filter(s.kind == "nps")
    latest = agg.join(
        nps, [agg.account_id == nps.account_id, agg.last_nps_ts == nps.ts]
    ).select(agg[ENTITY_KEY], nps.score)
    nps_last = latest.group_by(ENTITY_KEY).aggregate(nps_last=latest.score.mean())
    e = attach(attach(ent, agg), nps_last)
    return e.select(
        ENTITY_KEY,
        nps_last=e.nps_last,
        nps_avg_365d=e.nps_avg_365d,
        csat_avg_90d=e.csat_avg_90d,
        survey_responses_90d=_zero(e.survey_responses_90d),
        days_since_last_survey=_days_between(e.as_of, e.last_ts),
    )


# --- relationship -----------------------------------------------------------------------------
def touchpoint_features(ent: ir.Table, touchpoints: ir.Table) -> ir.Table:
    t = touchpoints.select(
        "account_id",
        "ts",
        "direction",
        executive=_optional(touchpoints, "executive", "boolean", False),
        responded=_optional(touchpoints, "responded", "boolean"),
    )
    j = _window_join(ent, t, "ts", None, ["direction", "executive", "responded"])
    a, ts = j.as_of, j.ts
    in90 = _in_last(ts, a, 90)
    outbound90 = in90 & (j.direction == "outbound")
    agg = j.group_by([ENTITY_KEY, "as_of"]).aggregate(
        touchpoints_30d=_count(ts, _in_last(ts, a, 30)),
        touchpoints_90d=_count(ts, in90),
        exec_touches_90d=_count(ts, in90 & j.executive),
        last_exec_ts=ts.max(where=j.executive),
        last_ts=ts.max(),
        # Outbound touchpoints whose response is known, and those answered.
        outbound_known=_count(ts, outbound90 & j.responded.notnull()),
        outbound_answered=_count(ts, outbound90 & j.responded.fill_null(False)),
    )
    e = attach(ent, agg)
    return e.select(
        ENTITY_KEY,
        touchpoints_30d=_zero(e.touchpoints_30d),
        touchpoints_90d=_zero(e.touchpoints_90d),
        exec_touches_90d=_zero(e.exec_touches_90d),
        days_since_last_exec_touch=_days_between(e.as_of, e.last_exec_ts),
        days_since_last_touch=_days_between(e.as_of, e.last_ts),
        response_rate_90d=e.outbound_answered.cast("float64") / e.outbound_known.nullif(0),
    )


# --- commercial -------------------------------------------------------------------------------
def _active(start: ir.TimestampValue, end: ir.TimestampValue, t: ir.Value) -> ir.BooleanValue:
    return (start < t) & (end.isnull() | (end >= t))


def subscription_features(ent: ir.Table, subscriptions: ir.Table) -> ir.Table:
    s = subscriptions.select(
        "account_id",
        "start_date",
        "end_date",
        arr=subscriptions.arr.cast("float64"),
        seats=subscriptions.seats.cast("float64"),
        auto_renew=_optional(subscriptions, "auto_renew", "boolean"),
    )
    j = _window_join(ent, s, "start_date", None, ["end_date", "arr", "seats", "auto_renew"])
    a = j.as_of
    active = _active(j.start_date, j.end_date, a)
    active_before = _active(j.start_date, j.end_date, a - days(90))
    agg = j.group_by([ENTITY_KEY, "as_of"]).aggregate(
        n_active=_count(j.start_date, active),
        arr_now=j.arr.sum(where=active),
        arr_before=j.arr.sum(where=active_before),
        seats_now=j.seats.sum(where=active),
        next_end=j.end_date.min(where=active),
        auto_renew=j.auto_renew.cast("int8").max(where=active),
    )
    # The term of the contract that renews next (the one days_to_renewal counts down to);
    # several ending that day: the longest.
    nxt = agg.select(ENTITY_KEY, "next_end")
    jt = j.join(nxt, j[ENTITY_KEY] == nxt[ENTITY_KEY]).select(
        j[ENTITY_KEY], j.as_of, j.start_date, j.end_date, nxt.next_end)
    renewing = _active(jt.start_date, jt.end_date, jt.as_of) & (jt.end_date == jt.next_end)
    terms = jt.group_by(ENTITY_KEY).aggregate(
        contract_term_days=_days_between(jt.end_date, jt.start_date).max(where=renewing))
    e = attach(attach(ent, agg), terms)
    arr = _zero(e.arr_now)
    return e.select(
        ENTITY_KEY,
        arr=arr,
        arr_pct_change_90d=_pct_change(arr, _zero(e.arr_before)),
        subscription_seats=ibis.ifelse(_zero(e.n_active) == 0, 0.0, e.seats_now),
        days_to_renewal=_days_between(e.next_end, e.as_of),
        contract_term_days=e.contract_term_days,
        auto_renew=e.auto_renew.cast("float64"),
    )


def contracted_seats(
    ent: ir.Table, accounts: ir.Table, subscriptions: ir.Table | None
) -> ir.Table:
    """Seats contracted at as_of: active subscriptions' seats when > 0, else accounts.seats."""
    acc = accounts.select("account_id", acc_seats=_optional(accounts, "seats", "float64"))
    e = ent.left_join(acc, ent.account_id == acc.account_id).select(
        ent[ENTITY_KEY], ent.account_id, ent.as_of, acc.acc_seats
    )
    if subscriptions is None:
        return e.select(ENTITY_KEY, contracted_seats=e.acc_seats.nullif(0))
    s = subscriptions.select(
        "account_id", "start_date", "end_date", seats=subscriptions.seats.cast("float64")
    )
    j = _window_join(ent, s, "start_date", None, ["end_date", "seats"])
    sub = j.group_by([ENTITY_KEY, "as_of"]).aggregate(
        sub_seats=j.seats.sum(where=_active(j.start_date, j.end_date, j.as_of))
    )
    e = e.left_join(sub, e[ENTITY_KEY] == sub[ENTITY_KEY]).select(
        e[ENTITY_KEY], e.acc_seats, sub.sub_seats
    )
    return e.select(
        ENTITY_KEY, contracted_seats=ibis.coalesce(e.sub_seats.nullif(0), e.acc_seats.nullif(0))
    )


def invoice_features(ent: ir.Table, invoices: ir.Table) -> ir.Table:
    i = invoices.select("account_id", "issued_at", "due_at", "paid_at", "status")
    j = _window_join(ent, i, "issued_at", None, ["due_at", "paid_at", "status"])
    a = j.as_of
    due = j.due_at < a
    unpaid = j.paid_at.isnull() | (j.paid_at >= a)
    agg = j.group_by([ENTITY_KEY, "as_of"]).aggregate(
        failed_payments_90d=_count(
            j.issued_at, _in_last(j.issued_at, a, 90) & (j.status == "failed") & due
        ),
        overdue_invoices=_count(j.issued_at, due & unpaid),
    )
    e = attach(ent, agg)
    return e.select(
        ENTITY_KEY,
        failed_payments_90d=_zero(e.failed_payments_90d),
        overdue_invoices=_zero(e.overdue_invoices),
    )


# --- profile ----------------------------------------------------------------------------------
def attribute_columns(accounts: ir.Table) -> list[str]:
    """Extra columns of `accounts` beyond the contract: the custom attributes."""
    known = set(contract_table("accounts").column_names)
    return [c for c in accounts.columns if c not in known]


def profile_features(ent: ir.Table, accounts: ir.Table, attribute_prefix: str) -> ir.Table:
    """Profile features and custom attributes from the accounts snapshot, plus `_known`.

    A date (or timestamp) attribute is an age: `<prefix>days_since_<column>`, the calendar
    days from the date to as_of, like tenure_days. A date on or after as_of is not a "days
    since" (not known yet, or a date in the future): NaN, never a negative age."""
    attrs = attribute_columns(accounts)
    dated = {c for c in attrs if accounts[c].type().is_temporal()}
    acc = accounts.select(
        "account_id",
        "created_at",
        seats=_optional(accounts, "seats", "float64"),
        **{c: _optional(accounts, c, "string") for c in ("segment", "industry", "region", "plan")},
        **{f"_a_{c}": accounts[c] for c in attrs},
    )
    e = ent.left_join(acc, ent.account_id == acc.account_id).select(
        ent[ENTITY_KEY],
        ent.as_of,
        *[acc[c] for c in acc.columns if c != "account_id"],
        _known=acc.account_id.notnull(),
    )
    return e.select(
        ENTITY_KEY,
        "_known",
        # A customer from its signup day on (features/entities.py): 0 on that day.
        tenure_days=ibis.ifelse(
            e.created_at < e.as_of + days(1), _days_between(e.as_of, e.created_at),
            ibis.null("int64"),
        ),
        seats=e.seats,
        segment=e.segment,
        industry=e.industry,
        region=e.region,
        plan=e.plan,
        **{_attribute_name(attribute_prefix, c, c in dated): _attribute_value(e, c, c in dated)
           for c in attrs},
    )


def _attribute_name(prefix: str, column: str, dated: bool) -> str:
    return f"{prefix}{DAYS_SINCE_ATTRIBUTE}{column}" if dated else f"{prefix}{column}"


def _attribute_value(e: ir.Table, column: str, dated: bool) -> ir.Value:
    value = e[f"_a_{column}"]
    if not dated:
        return value
    when = value.cast("timestamp")
    return ibis.ifelse(when < e.as_of, _days_between(e.as_of, when), ibis.null("int64"))


# --- the catalogue ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceDefinition:
    """How one source table's features are built."""

    table: str
    lookback_days: int | None
    """How far back its rows matter; None: the whole history (states, days_since)."""
    build: Callable[..., ir.Table]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(f.name for f in FEATURES if f.source == self.table)


SOURCES: tuple[SourceDefinition, ...] = (
    SourceDefinition("usage_events", USAGE_LOOKBACK_DAYS, usage_features),
    SourceDefinition("tickets", None, ticket_features),
    SourceDefinition("surveys", None, survey_features),
    SourceDefinition("touchpoints", None, touchpoint_features),
    SourceDefinition("subscriptions", None, subscription_features),
    SourceDefinition("invoices", None, invoice_features),
)
"""Every source table with features, in build order; `accounts` (profile) is built first."""
SOURCE_BY_TABLE: dict[str, SourceDefinition] = {s.table: s for s in SOURCES}
