"""Peer benchmarks: where an account stands in its segment, feature by feature and dimension by
dimension, from a peer table computed once.

Owns `PeerTable` (per peer group, the sorted non-missing values of every numeric feature, rules
dimension and model probability of the scored population at one as-of date; medians and
percentiles are binary searches, so a lookup costs microseconds), `build_peer_table` (pure, from
frames) and `load_peer_table` (the I/O edge: the active accounts' features, rules scores and
model probabilities as of a date, cached per warehouse file, date, rules version and model set).
A segment with fewer than `min_size` accounts is compared with all accounts instead. It does not
word anything or explain models.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from features.registry import FEATURES
from features.settings import FeatureConfig
from scoring.bundle import Bundle
from scoring.health.profiles import Rules
from scoring.health.scoring import DIMENSION_COLUMNS, score_frame
from scoring.model_set import model_set

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
    columns: dict[str, pd.Series] = {c: features[c] for c in NUMERIC_FEATURES
                                     if c in features.columns}
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


def population_probabilities(bundles: Mapping[str, Bundle], features: pd.DataFrame
                             ) -> pd.DataFrame:
    """Every model's calibrated probability per row, monotone across each target's horizons."""
    models = model_set(bundles)
    if models is None or features.empty:
        return pd.DataFrame(index=features.index)
    probs = models.probabilities(models.matrices(features))
    return pd.DataFrame(probs, index=features.index)


# (warehouse file, mtime, as_of, rules version, model ids) -> table; few entries, process-wide.
_CACHE: dict[tuple[Any, ...], tuple[PeerTable, tuple[Any, ...]]] = {}
_LOCK = threading.Lock()
_CACHE_SIZE = 4


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
    rules: Rules,
    bundles: Mapping[str, Bundle] | None,
    feature_cfg: FeatureConfig,
    *,
    min_size: int = MIN_PEERS,
    progress: Callable[[str, float], None] | None = None,
) -> PeerTable:
    """The peer table of the accounts active at `as_of` (cached: built once per warehouse file,
    date, rules version and set of models). `progress(step, fraction)` reports the build."""
    from features.contract.warehouse import connected_tables
    from features.entities import build_entities
    from scoring.batch import build_account_features

    when = pd.Timestamp(as_of).normalize()
    refs = tuple(sorted((bundles or {}).items()))
    key = (_warehouse_key(con), when, rules.config_version,
           tuple((k, id(b)) for k, b in refs), min_size)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit[0]
    report = progress or (lambda _step, _done: None)
    report("accounts", 0.0)
    entities = build_entities(con, [when])
    connected = connected_tables(con)
    report("accounts", 1.0)
    if entities.empty:
        feats = pd.DataFrame({"account_id": pd.Series([], dtype=str)})
        table = build_peer_table(feats, as_of=when, min_size=min_size)
    else:
        feats = build_account_features(con, entities, feature_cfg, chunk=2_000,
                                       progress=progress)
        report("scores", 0.0)
        scored = score_frame(feats, connected, rules)
        report("scores", 1.0)
        report("models", 0.0)
        probs = population_probabilities(bundles or {}, feats)
        report("models", 1.0)
        table = build_peer_table(feats, scored, probs if len(probs.columns) else None,
                                 as_of=when, min_size=min_size)
    log.info("peer table as of %s: %d accounts in %d segments", when.date(), table.size,
             len(table.groups) - 1)
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        # Keeping the bundles referenced keeps their ids from being reused by other objects.
        _CACHE[key] = (table, refs)
    return table
