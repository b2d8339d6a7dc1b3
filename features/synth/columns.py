"""Column builders shared by the generator's modules: integer codes to string columns, day indices
and seconds to timestamps, and the business-hours clock.

Pure helpers over numpy arrays; they know nothing of the world's behaviour. Strings are built by
Arrow from codes and a small dictionary, so millions of rows never pass through Python objects.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

DAY_US = 86_400 * 1_000_000
SECOND_US = 1_000_000


def str_column(codes: np.ndarray, labels: np.ndarray | list[str] | tuple[str, ...],
               valid: np.ndarray | None = None) -> pd.Series:
    """A pandas string column holding `labels[codes]` (missing where `valid` is False)."""
    dictionary = pa.array(np.asarray(labels, dtype=object), type=pa.string())
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    indices = pa.array(np.asarray(codes, dtype=np.int32), mask=mask)
    arr = pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.large_string())
    return pd.Series(arr.to_pandas(), copy=False)


def id_labels(prefix: str, n: int, width: int | None = None) -> np.ndarray:
    """Identifiers `prefix00001`... for codes 0..n-1, zero-padded to a common width."""
    width = width or max(5, len(str(max(n, 1))))
    if n == 0:
        return np.zeros(0, dtype=f"<U{len(prefix) + width}")
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width))


def timestamps(start: date, day: np.ndarray, seconds: np.ndarray | float = 0.0) -> np.ndarray:
    """datetime64[us] for day index `day` after `start` plus `seconds` into that day."""
    base = np.datetime64(start, "us").astype(np.int64)
    us = base + np.asarray(day, dtype=np.int64) * DAY_US + np.round(
        np.asarray(seconds, dtype=np.float64) * SECOND_US).astype(np.int64)
    return us.astype("datetime64[us]")


def nullable_timestamps(start: date, day: np.ndarray, seconds: np.ndarray,
                        valid: np.ndarray) -> pd.Series:
    """Like `timestamps`, NaT where `valid` is False."""
    ts = timestamps(start, np.where(valid, day, 0), np.where(valid, seconds, 0.0))
    ts[~valid] = np.datetime64("NaT")
    return pd.Series(ts)


def work_seconds(rng: np.random.Generator, utc_hour: np.ndarray, spread_hours: float = 2.5
                 ) -> np.ndarray:
    """Seconds into the UTC day, clustered around each row's mid-working-day hour.

    Hours wrap around midnight within the same UTC day, so a row never leaves its day: the day
    index alone decides what happened before or after a churn or an as-of date.
    """
    hours = utc_hour + rng.normal(0.0, spread_hours, size=len(utc_hour))
    return np.floor(np.mod(hours * 3600.0, 86_400.0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
