"""Peer benchmarks: where an account stands in its segment, feature by feature and dimension by
dimension, from a peer table computed once.

Owns `PeerTable` (per peer group, the sorted non-missing values of every numeric feature, rules
dimension and model probability of the scored population at one as-of date; medians and
percentiles are binary searches, so a lookup is cheap), `build_peer_table` (pure, from
frames) and `load_peer_table` (the I/O edge: the active accounts' features, rules scores and
model probabilities as of a date, cached per warehouse file, date, rules version and model set).
A segment with fewer than `min_size` accounts is compared with all accounts instead. It does not
word anything or explain models.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from cachetools import LRUCache

from features.registry import EVENT_TYPE_PREFIX, FEATURES
from scoring.health.scoring import DIMENSION_COLUMNS
from scoring.pipeline import ScoredFrame, Scorer, score_accounts

log = logging.getLogger(__name__)

ALL = "__all__"
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.dtype == "float")
MIN_PEERS = 10


@dataclass(frozen=True)
class PeerGroup:
    name: str
    size: int
    values: dict[str, np.ndarray]
    """Column -> sorted non-missing values."""
    medians: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, size: int, values: dict[str, np.ndarray]) -> PeerGroup:
        return cls(name, size, values, {c: float(np.median(v)) for c, v in values.items()
                                        if len(v)})

    def median(self, column: str) -> float | None:
        return self.medians.get(column)

    def percentile(self, column: str, value: Any) -> float | None:
        """0-100: share of the group below `value`, ties counting half (mid-rank)."""
        v = self.values.get(column)
        try:
            x = float(value)
        except (TypeError, ValueError):
            return None
        if v is None or not len(v) or np.isnan(x):
            return None
        below = np.searchsorted(v, x, side="left")
        at_or_below = np.searchsorted(v, x, side="right")
        return float(100.0 * (below + 0.5 * (at_or_below - below)) / len(v))


@dataclass(frozen=True)
class PeerTable:
    as_of: pd.Timestamp | None
    groups: dict[str, PeerGroup]
    """By segment, plus ALL for every account."""
    min_size: int = MIN_PEERS
    models: tuple[str, ...] = field(default=())
    """Model labels whose probabilities the table holds (columns named by label)."""

    def group(self, segment: Any) -> PeerGroup:
        """The account's segment, or all accounts when the segment is unknown or too small."""
        key = None if segment is None or (isinstance(segment, float) and np.isnan(segment)) \
            else str(segment)
        g = self.groups.get(key) if key is not None else None
        if g is None or g.size < self.min_size:
            return self.groups[ALL]
        return g

    @property
    def population(self) -> PeerGroup:
        return self.groups[ALL]

    @property
    def size(self) -> int:
        return self.groups[ALL].size


def _sorted(col: pd.Series) -> np.ndarray:
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.sort(v[~np.isnan(v)])


def build_peer_table(
    features: pd.DataFrame,
    scored: pd.DataFrame | None = None,
    probabilities: pd.DataFrame | None = None,
    *,
    as_of: Any = None,
    min_size: int = MIN_PEERS,
) -> PeerTable:
    """Peer groups from the population's features (build_features output), their `score_frame`
    rows and model probabilities (one column per label), all in the same row order."""
    n = len(features)
    for what, frame in (("scored", scored), ("probabilities", probabilities)):
        if frame is not None and len(frame) != n:
            raise ValueError(f"peer table: {what} has {len(frame)} rows, features has {n}")
    # The registry's numeric features and the warehouse's event types (their factor lines
    # compare an account with its peers like any usage feature's).
    columns: dict[str, pd.Series] = {c: features[c] for c in (*NUMERIC_FEATURES, *(
        c for c in features.columns if c.startswith(EVENT_TYPE_PREFIX))) if c in features.columns}
    if scored is not None:
        for c in ("score", *DIMENSION_COLUMNS):
            if c in scored.columns:
                columns[c] = scored[c].reset_index(drop=True)
    labels: tuple[str, ...] = ()
    if probabilities is not None:
        labels = tuple(probabilities.columns)
        for c in labels:
            columns[c] = probabilities[c].reset_index(drop=True)
    table = pd.DataFrame({k: pd.to_numeric(v, errors="coerce").to_numpy(dtype=float,
                                                                          na_value=np.nan)
                          for k, v in columns.items()})
    segment = (features["segment"].astype(object).to_numpy() if "segment" in features.columns
               else np.full(n, None, dtype=object))
    groups = {ALL: PeerGroup.of(ALL, n, {c: _sorted(table[c]) for c in table.columns})}
    seg = pd.Series(segment, dtype=object)
    for name in sorted({str(s) for s in seg.dropna()}):
        rows = table[(seg == name).to_numpy()]
        groups[name] = PeerGroup.of(name, len(rows),
                                   {c: _sorted(rows[c]) for c in rows.columns})
    when = pd.Timestamp(as_of) if as_of is not None else None
    return PeerTable(as_of=when, groups=groups, min_size=min_size, models=labels)


def peers_of(frame: ScoredFrame, *, min_size: int = MIN_PEERS) -> PeerTable:
    """The peer table of a scored portfolio (the accounts of `score_accounts(..., None, ...)`)."""
    probs = frame.probabilities
    return build_peer_table(frame.features, frame.scores, probs if len(probs.columns) else None,
                            as_of=frame.as_of, min_size=min_size)


# (warehouse file, mtime, as_of, rules version, model ids) -> table; few tables, process-wide.
_CACHE: LRUCache[tuple[Any, ...], tuple[PeerTable, Any]] = LRUCache(maxsize=4)
_LOCK = threading.Lock()


def _warehouse_key(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The file and its modification time: a re-ingest changes it and invalidates the cache."""
    path = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    file = path[0] if path else None
    if not file:
        return ("memory", id(con))
    try:
        return (file, os.stat(file).st_mtime_ns)
    except OSError:
        return (file, None)


def clear_peer_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def load_peer_table(
    con: duckdb.DuckDBPyConnection,
    as_of: Any,
    scorer: Scorer,
    *,
    min_size: int = MIN_PEERS,
    progress: Callable[[str, float], None] | None = None,
) -> PeerTable:
    """The peer table of the accounts active at `as_of`, scored by the one pipeline (cached: built
    once per warehouse file, date, rules version and set of models). `progress(step, fraction)`
    reports the build."""
    when = pd.Timestamp(as_of).normalize()
    models = scorer.models
    key = (_warehouse_key(con), when, scorer.rules.config_version,
           id(models) if models is not None else None, min_size)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit[0]
    frame = score_accounts(con, None, when, scorer, trend=False, progress=progress)
    table = peers_of(frame, min_size=min_size)
    log.info("peer table as of %s: %d accounts in %d segments", when.date(), table.size,
             len(table.groups) - 1)
    with _LOCK:
        # Holding the models keeps their id from being reused while the entry lives.
        _CACHE[key] = (table, models)
    return table
