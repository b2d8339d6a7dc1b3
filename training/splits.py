"""Time-based splits of as-of dates: train, early-stopping, calibration and test windows.

Everything a model learns from comes before what judges it. Working back from the end of the
labelled dates: the test window takes the last `test_dates` dates; the calibration window the
last `calib_dates` dates whose label windows close by the first test date; the early-stopping
(validation) window the `valid_dates` dates before calibration; training every date whose label
window closes by the first validation date. So the gap between a window that fits something and
a later window that judges it is at least the horizon: no label seen in fitting overlaps a later
window's future. The rolling-origin backtest repeats this with the test window moved back by
`test_dates` dates per fold (fold 0 is the latest).

This module only chooses dates; it never touches features, labels or models. Random folds over
account-months are deliberately absent (they leak the future into the past).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


class NotEnoughHistoryError(ValueError):
    """Too few as-of dates for the requested windows and gaps."""


@dataclass(frozen=True)
class TimeSplit:
    horizon: int
    train: tuple[pd.Timestamp, ...]
    valid: tuple[pd.Timestamp, ...]
    calib: tuple[pd.Timestamp, ...]
    test: tuple[pd.Timestamp, ...]
    fold: int = 0

    def window(self, name: str) -> tuple[pd.Timestamp, ...]:
        return getattr(self, name)

    def describe(self) -> dict[str, object]:
        """Dates of each window as ISO strings (for reports and MLflow)."""
        def span(ds: tuple[pd.Timestamp, ...]) -> dict[str, object]:
            return {"first": ds[0].date().isoformat(), "last": ds[-1].date().isoformat(),
                    "dates": len(ds)}
        return {"fold": self.fold, "horizon": self.horizon,
                **{w: span(self.window(w)) for w in ("train", "valid", "calib", "test")}}


def _last_before(dates: Sequence[pd.Timestamp], limit: pd.Timestamp, n: int | None,
                 ) -> tuple[pd.Timestamp, ...]:
    """The last n dates (all when n is None) that are <= limit."""
    eligible = [d for d in dates if d <= limit]
    return tuple(eligible if n is None else eligible[-n:])


def time_split(
    dates: Sequence[pd.Timestamp | str],
    horizon: int,
    *,
    valid_dates: int = 2,
    calib_dates: int = 2,
    test_dates: int = 2,
    fold: int = 0,
    min_train_dates: int = 2,
) -> TimeSplit:
    """One chronological split of labelled as-of dates for a horizon in days.

    `dates` are the as-of dates whose `horizon`-day labels are observed; `fold` moves the test
    window back by `fold * test_dates` dates.
    """
    ds = sorted({pd.Timestamp(d) for d in dates})
    gap = pd.Timedelta(days=horizon)
    end = len(ds) - fold * test_dates
    test = tuple(ds[max(end - test_dates, 0):end])
    if len(test) < test_dates:
        raise NotEnoughHistoryError(
            f"fold {fold}: {len(ds)} labelled as-of dates leave no {test_dates}-date test window"
        )
    calib = _last_before(ds, test[0] - gap, calib_dates)
    valid = _last_before([d for d in ds if d < calib[0]], pd.Timestamp.max, valid_dates) \
        if len(calib) == calib_dates else ()
    train = _last_before(ds, valid[0] - gap, None) if len(valid) == valid_dates else ()
    if len(calib) < calib_dates or len(valid) < valid_dates or len(train) < min_train_dates:
        raise NotEnoughHistoryError(
            f"fold {fold} of the {horizon}-day split needs {test_dates} test, {calib_dates} "
            f"calibration, {valid_dates} validation and {min_train_dates}+ training as-of dates "
            f"with {horizon}-day gaps; {len(ds)} labelled dates "
            f"({ds[0].date() if ds else '-'} .. {ds[-1].date() if ds else '-'}) are too few: "
            "widen the as-of range or use fewer or shorter windows"
        )
    return TimeSplit(horizon, train, valid, calib, test, fold)


def rolling_origin(
    dates: Sequence[pd.Timestamp | str],
    horizon: int,
    n_folds: int,
    **windows: int,
) -> list[TimeSplit]:
    """Backtest folds, latest first; folds that do not fit in the history are dropped
    (with at least one fold always required)."""
    folds: list[TimeSplit] = []
    for k in range(n_folds):
        try:
            folds.append(time_split(dates, horizon, fold=k, **windows))
        except NotEnoughHistoryError:
            if k == 0:
                raise
            break
    return folds


def in_window(as_of: pd.Series, window: Sequence[pd.Timestamp]) -> np.ndarray:
    """Boolean mask of rows whose as-of date is in the window."""
    values = as_of.to_numpy(dtype="datetime64[ns]")
    return np.isin(values, np.array([np.datetime64(pd.Timestamp(d), "ns") for d in window]))
