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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb

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


def event_counts(con: duckdb.DuckDBPyConnection) -> Counts:
    """Rows per event name of the warehouse's usage table (empty without one)."""
    def read() -> Counts:
        with con.cursor() as cur:
            if "usage_events" not in connected_tables(cur):
                return ()
            columns = {c[0] for c in cur.execute("select * from usage_events limit 0"
                                                 ).description}
            # Events as the features count them: quantities, 1 where unknown or absent.
            events = "sum(coalesce(cast(quantity as double), 1))" if "quantity" in columns \
                else "count(*)"
            rows = cur.execute(f"select event, {events} from usage_events "
                               "where event is not null group by event order by event"
                               ).fetchall()
        return tuple((str(name), float(n)) for name, n in rows)

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
    counts = event_counts(con)
    if cfg.event_types is not None:
        return named_event_types(counts, cfg.event_types)
    return choose_event_types(counts, cfg.top_event_types)
