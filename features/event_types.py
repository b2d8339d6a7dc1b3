"""Which of the customer's event types get features of their own, decided once per warehouse.

A customer brings its own `usage_events.event` vocabulary. The most frequent types (by events,
summed quantities as the features count them, over the warehouse's whole usage table;
`FeatureConfig.top_event_types` of them, ties by name) are the ones
`features.definitions.usage_features` builds `event_<slug>_*` features for. The
choice is a deterministic function of the warehouse, so every path reading the same warehouse
(training, the daily job, the service's snapshot, `healthscore features`) builds the same
columns; a read-only warehouse reads it once per connection. A caller that must build exactly
the types a model was trained with (the scoring pipeline) names them in
`FeatureConfig.event_types` instead: a named type the data lacks has counts of 0.

This module reads the warehouse and decides; it defines no feature (definitions.py does) and
never writes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir

from features.contract.warehouse import catalog_read, connected_tables
from features.registry import event_slug
from features.settings import FeatureConfig

Counts = tuple[tuple[str, float], ...]
"""(event name, events) of the usage table, every distinct name: summed quantities, as the
features count events."""


@dataclass(frozen=True)
class EventType:
    """One event type with features: its slug (the feature names' stem) and the event names
    of the data it counts (several names that slug alike are one type; none: no rows)."""

    slug: str
    names: tuple[str, ...]


def event_counts_expr(usage: ir.Table) -> ir.Table:
    """(event, n) per event name of a usage table: events as the features count them,
    summed quantities with 1 where unknown or absent. One Ibis expression for every engine:
    DuckDB runs its SQL (compiled once, `event_counts`), Spark runs it as it is."""
    events = usage.quantity.cast("float64").fill_null(1.0) if "quantity" in usage.columns \
        else ibis.literal(1.0, type="float64")
    rows = usage.select("event", _events=events)
    rows = rows.filter(rows.event.notnull())
    return rows.group_by("event").aggregate(n=rows._events.sum())


def counts_of(rows: Iterable[tuple[Any, Any]]) -> Counts:
    """`event_counts_expr`'s rows as Counts, by event name."""
    return tuple(sorted((str(name), float(n)) for name, n in rows))


@functools.lru_cache(maxsize=4)
def _counts_sql(with_quantity: bool) -> str:
    columns = {"event": "string", **({"quantity": "float64"} if with_quantity else {})}
    return ibis.to_sql(event_counts_expr(ibis.table(columns, name="usage_events")),
                       dialect="duckdb")


def event_counts(con: duckdb.DuckDBPyConnection) -> Counts:
    """Rows per event name of the warehouse's usage table (empty without one)."""
    def read() -> Counts:
        with con.cursor() as cur:
            if "usage_events" not in connected_tables(cur):
                return ()
            columns = {c[0] for c in cur.execute("select * from usage_events limit 0"
                                                 ).description}
            rows = cur.execute(_counts_sql("quantity" in columns)).fetchall()
        return counts_of(rows)

    return catalog_read(con, "event_counts", read)


def _by_slug(counts: Iterable[tuple[str, float]]) -> dict[str, tuple[list[str], float]]:
    out: dict[str, tuple[list[str], float]] = {}
    for name, n in counts:
        names, total = out.setdefault(event_slug(name), ([], 0.0))
        names.append(name)
        out[event_slug(name)] = (names, total + n)
    return out


def choose_event_types(counts: Counts, top: int) -> tuple[EventType, ...]:
    """The `top` most frequent types, most frequent first (ties by slug)."""
    grouped = _by_slug(counts)
    ranked = sorted(grouped, key=lambda s: (-grouped[s][1], s))[:top]
    return tuple(EventType(s, tuple(sorted(grouped[s][0]))) for s in ranked)


def named_event_types(counts: Counts, slugs: Sequence[str]) -> tuple[EventType, ...]:
    """The types `slugs` (a model's), in that order, with the data's names for each."""
    grouped = _by_slug(counts)
    return tuple(EventType(s, tuple(sorted(grouped.get(s, ([], 0.0))[0])))
                 for s in dict.fromkeys(slugs))


def event_types(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> tuple[EventType, ...]:
    """The event types the features of `con` are built for under `cfg`."""
    if cfg.event_types is None and cfg.top_event_types == 0:
        return ()
    # A source of another engine (features/spark_engine.py) counts on that engine.
    counts = con.event_counts() if hasattr(con, "event_counts") else event_counts(con)
    if cfg.event_types is not None:
        return named_event_types(counts, cfg.event_types)
    return choose_event_types(counts, cfg.top_event_types)
