"""Training sets: features and labels of the active accounts at many historical as-of dates.

Rows come from the one feature function (`features.build.build_features`) applied to the entity
frame of `features.entities.build_entities`, joined row by row to `training.labels.build_labels`.
Labels stay NaN where their window is censored: each model drops those rows for its own label,
never reads them as 0. This module decides which dates and which columns; it fits nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from features.contract.tables import TABLES
from features.contract.warehouse import connected_tables
from features.registry import ENTITY_COLUMNS, EVENT_TYPE_PREFIX, FEATURE_NAMES, FEATURES
from features.settings import FeatureConfig
from training.labels import build_labels, data_end, label_names, last_labelled_date
from training.splits import in_window

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work completes."""

# The longest window of the activity features (the yearly NPS average aside): training dates
# start this long after the data does, so no row sees a truncated window.
MAX_FEATURE_WINDOW_DAYS = max(f.window for f in FEATURES if f.window and f.window <= 90)


BATCHES = 6
"""Feature builds per training set (progress granularity)."""


@dataclass
class TrainingSet:
    """One row per (account_id, as_of): entity columns, features, then labels."""

    frame: pd.DataFrame
    features: list[str]
    labels: list[str]
    connected: frozenset[str]
    data_end: pd.Timestamp
    split_dates: tuple[pd.Timestamp, ...] | None = None
    """The as-of dates time splits are carved from; the others (`train_as_of_frequency`) only
    ever add training rows. None: every date."""

    @property
    def dates(self) -> list[pd.Timestamp]:
        return [pd.Timestamp(d) for d in np.unique(self.frame["as_of"].to_numpy("datetime64[ns]"))]

    def labelled_dates(self, label: str) -> list[pd.Timestamp]:
        """As-of dates where some row has an observed (uncensored) label."""
        seen = self.frame.loc[self.frame[label].notna(), "as_of"].to_numpy("datetime64[ns]")
        dates = [pd.Timestamp(d) for d in np.unique(seen)]
        if self.split_dates is None:
            return dates
        keep = set(self.split_dates)
        return [d for d in dates if d in keep]

    def training_rows(self, label: str, window: Sequence[pd.Timestamp]) -> pd.DataFrame:
        """Labelled rows of a training window: its split dates, plus every extra training date
        up to its last one when the set has any."""
        as_of = self.frame["as_of"]
        mask = in_window(as_of, window)
        if self.split_dates is not None:
            extra = (as_of <= max(window)) & ~in_window(as_of, self.split_dates)
            mask = mask | extra.to_numpy()
        part = self.frame[mask]
        return part[part[label].notna()]

    def fingerprint(self, label: str) -> str:
        """Hash of the labelled rows (ids, dates, labels): the same data gives the same hash."""
        rows = self.frame.loc[self.frame[label].notna(), ["account_id", "as_of", label]]
        digest = pd.util.hash_pandas_object(rows, index=False).to_numpy()
        return hashlib.sha256(digest.tobytes()).hexdigest()[:16]


# Tables whose rows record activity as it is observed. Subscriptions are left out: contracts
# signed years before the observation window would pull its start back; so are the outcomes.
ACTIVITY_TABLES = ("usage_events", "tickets", "surveys", "touchpoints", "invoices")


def data_start(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """Midnight of the first observed activity: product usage when connected, else the earliest
    row of the other activity tables."""
    connected = connected_tables(con)
    tables = ["usage_events"] if "usage_events" in connected else \
        [t for t in ACTIVITY_TABLES if t in connected]
    parts = [f'select min("{t.time_column}") as m from "{t.name}"' for t in TABLES
             if t.time_column and t.name in tables]
    if not parts:
        raise ValueError("the warehouse has no dated table: cannot choose training dates")
    first = con.execute(f"select min(m) from ({' union all '.join(parts)})").fetchone()[0]
    if first is None:
        raise ValueError("the warehouse's dated tables are empty: cannot choose training dates")
    return pd.Timestamp(first).normalize()


def as_of_dates(
    con: duckdb.DuckDBPyConnection,
    start: date | str | None,
    end: date | str | None,
    frequency: str,
    horizons: Sequence[int],
) -> list[pd.Timestamp]:
    """Training as-of dates at `frequency` (a pandas offset alias, e.g. MS = month start).

    Defaults: from the start of the data plus the longest core feature window (earlier dates
    would see truncated windows) to the last date the shortest horizon can still label.
    """
    first = pd.Timestamp(start) if start is not None else \
        data_start(con) + pd.Timedelta(days=MAX_FEATURE_WINDOW_DAYS)
    last = pd.Timestamp(end) if end is not None else last_labelled_date(con, min(horizons))
    if last < first:
        raise ValueError(f"as-of range is empty: {first.date()} .. {last.date()}")
    dates = list(pd.date_range(first, last, freq=frequency))
    if not dates:
        raise ValueError(f"no {frequency!r} as-of dates between {first.date()} and {last.date()}")
    return dates


def feature_columns(frame: pd.DataFrame, attribute_prefix: str = "attr_") -> list[str]:
    """Registered features, event types and custom attributes present in the frame, in frame
    order."""
    return [c for c in frame.columns
            if c in FEATURE_NAMES or c.startswith((EVENT_TYPE_PREFIX, attribute_prefix))]


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    dates: Sequence[pd.Timestamp],
    cfg: FeatureConfig,
    horizons: Sequence[int],
    progress: Progress | None = None,
) -> TrainingSet:
    """Features and labels of the active accounts at each as-of date."""
    from features.build import build_features
    from features.entities import build_entities

    end = data_end(con)
    dates = list(dates)
    frames = []
    # A few dates per call: one call per date repeats the per-query overhead (much slower over
    # many dates), one call for all of them shows no progress.
    step = max(1, -(-len(dates) // BATCHES))
    for i in range(0, len(dates), step):
        batch = dates[i:i + step]
        entities = build_entities(con, batch)
        if len(entities):
            feats = build_features(con, entities, cfg).reset_index(drop=True)
            labels = build_labels(con, entities, horizons, end=end).reset_index(drop=True)
            _check_aligned(feats, labels, batch[0])
            frames.append(pd.concat([feats, labels.drop(columns=list(ENTITY_COLUMNS))], axis=1))
        if progress:
            progress("features", min(i + step, len(dates)), len(dates))
    if not frames:
        raise ValueError("no active accounts at any training as-of date")
    frame = _concat_keeping_categories(frames)
    feats = feature_columns(frame, cfg.attribute_prefix)
    log.info("training set: %d rows, %d dates, %d features", len(frame), len(dates), len(feats))
    return TrainingSet(frame, feats, label_names(horizons), connected_tables(con), end)


def _check_aligned(feats: pd.DataFrame, labels: pd.DataFrame, d: pd.Timestamp) -> None:
    same = (feats["account_id"].astype(str).to_numpy() == labels["account_id"].astype(str)
            .to_numpy()).all() and len(feats) == len(labels)
    if not same:
        raise RuntimeError(f"features and labels for {d.date()} are not in the same row order")


def _concat_keeping_categories(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-date frames; categories whose levels differ by date are unioned
    (a plain concat would silently turn them into object columns)."""
    first = frames[0]
    cats = [c for c in first.columns if isinstance(first[c].dtype, pd.CategoricalDtype)]
    for c in cats:
        levels = sorted({str(v) for f in frames for v in f[c].dropna().unique()})
        for f in frames:
            f[c] = pd.Categorical(f[c].astype(object).where(f[c].notna(), None), categories=levels)
    out = pd.concat(frames, ignore_index=True)
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out


def resample_snapshots(frame: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """Draw n_rows account-snapshots with replacement (for benches at a size the data lacks)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(frame), n_rows)
    out = frame.iloc[idx].reset_index(drop=True)
    out["account_id"] = [f"{a}-{i}" for i, a in enumerate(out["account_id"].astype(str))]
    return out
