"""Time-based splits of as-of dates: train, early-stopping, calibration and test windows.

Everything a model learns from comes before what judges it. Working back from the end of the
labelled dates: the test window takes the last `test_dates` dates; the calibration window the
last `calib_dates` dates whose label windows close by the first test date; the early-stopping
(validation) window the `valid_dates` dates before calibration; training every date whose label
window closes by the first validation date. So the gap between a window that fits something and
a later window that judges it is at least the horizon: no label seen in fitting overlaps a later
window's future. The rolling-origin backtest repeats this with the test window moved back by
`test_dates` dates per fold (fold 0 is the latest).

`plan_backtest` fits the configured windows to the history at hand: a horizon whose smallest
backtest (`SMALLEST`) does not fit is skipped, and the window sizes and the number of folds
shrink, down to `SMALLEST`, until the kept horizons fit; each change is a one-line note. When
not even the shortest horizon fits, the error names the settings and the smallest history that
would do.

This module only chooses dates; it never touches features, labels or models. Random folds over
account-months are deliberately absent (they leak the future into the past).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from training.settings import flag_name, setting_name


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
    refit: tuple[pd.Timestamp, ...] = ()
    """Every date whose label window closes by the first calibration date (the training dates
    and the later ones the early-stopping gap held back; an early-stopping date too when its
    labels close in time): what a fold's chosen model may be refit on before it is calibrated.
    None of its labels reaches into the calibration or test windows."""

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
    return TimeSplit(horizon, train, valid, calib, test, fold,
                     _last_before(ds, calib[0] - gap, None))


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


@dataclass(frozen=True)
class Windows:
    """Sizes of a backtest, in as-of dates (training takes every earlier date that fits)."""

    valid_dates: int
    calib_dates: int
    test_dates: int
    n_folds: int
    min_train_dates: int = 2

    def split_kwargs(self) -> dict[str, int]:
        return {"valid_dates": self.valid_dates, "calib_dates": self.calib_dates,
                "test_dates": self.test_dates, "min_train_dates": self.min_train_dates}

    def describe(self) -> str:
        return (f"valid_dates={self.valid_dates}, calib_dates={self.calib_dates}, "
                f"test_dates={self.test_dates}, n_folds={self.n_folds}")


SMALLEST = Windows(valid_dates=1, calib_dates=1, test_dates=1, n_folds=1, min_train_dates=2)
"""The smallest backtest the windows shrink to: one early-stopping, one calibration and one test
date, one fold, and two training dates (one date alone gives the trees a single snapshot of
each account)."""


@dataclass(frozen=True)
class BacktestPlan:
    """What one target's backtest runs: the horizons kept, the windows used, the folds."""

    target: str
    horizons: tuple[int, ...]
    skipped: tuple[int, ...]
    windows: Windows
    wanted: Windows
    folds: dict[int, list[TimeSplit]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def n_folds(self) -> int:
        return len(self.folds[self.horizons[0]])

    def describe(self) -> dict[str, object]:
        """The plan as plain values (for reports and MLflow)."""
        return {"horizons": list(self.horizons), "skipped_horizons": list(self.skipped),
                "valid_dates": self.windows.valid_dates, "calib_dates": self.windows.calib_dates,
                "test_dates": self.windows.test_dates, "n_folds": self.n_folds}


def _folds(dates: Sequence[pd.Timestamp], horizon: int, w: Windows) -> list[TimeSplit] | None:
    """Exactly `w.n_folds` folds, or None when they do not all fit."""
    try:
        return [time_split(dates, horizon, fold=k, **w.split_kwargs()) for k in range(w.n_folds)]
    except NotEnoughHistoryError:
        return None


def smallest_history(horizon: int, w: Windows, frequency: str, lead_days: int = 0,
                     start: pd.Timestamp | str = "2024-01-01") -> tuple[int, int]:
    """(as-of dates, days of history) the smallest history that fits `w` for `horizon` needs:
    `lead_days` before the first as-of date (the feature window), the dates at `frequency`, and
    the horizon after the last one (its label window)."""
    for n in range(2, 2000):
        dates = list(pd.date_range(start, periods=n, freq=frequency))
        if _folds(dates, horizon, w) is not None:
            return n, lead_days + (dates[-1] - dates[0]).days + horizon
    raise NotEnoughHistoryError(f"{horizon}-day labels at {frequency!r} never fit {w.describe()}")


def _sizes(w: Windows) -> str:
    return (f"{w.n_folds} folds of {w.valid_dates} valid, {w.calib_dates} calib, "
            f"{w.test_dates} test dates")


def _history(n_days: int) -> str:
    return f"{n_days} days (about {math.ceil(n_days / 30.44)} months)"


def _span(dates: Sequence[pd.Timestamp]) -> str:
    return f"{dates[0].date()} .. {dates[-1].date()}" if dates else "none"


def plan_backtest(
    target: str,
    labelled: Mapping[int, Sequence[pd.Timestamp]],
    wanted: Windows,
    *,
    frequency: str,
    lead_days: int = 0,
    shrink: bool = True,
) -> BacktestPlan:
    """Fit the backtest of `target` to its history.

    `labelled[h]`: the as-of dates whose h-day label is observed. Every horizon shares the test
    windows of the longest horizon kept (where it still has labels), each with its own gaps.
    With `shrink`, a horizon is kept when `SMALLEST` fits its labelled dates; then the most
    folds up to `wanted.n_folds` are kept (more origins judge a model better than wider windows
    do), with the largest windows up to the wanted ones (test, then calibration, then
    early-stopping dates first on a tie). Without it, every horizon must fit the wanted windows
    exactly. `lead_days` (the feature window before the first as-of date) and `frequency` (of
    the as-of dates) only size the smallest history an error asks for.
    """
    horizons = tuple(sorted(labelled))
    shortest = horizons[0]
    need = SMALLEST if shrink else wanted
    fits = tuple(h for h in horizons
                 if _folds(sorted(labelled[h]), h, need) is not None)
    if not shrink and len(fits) < len(horizons):
        worst = max(h for h in horizons if h not in fits)
        n, days = smallest_history(worst, wanted, frequency, lead_days)
        have = sorted(labelled[worst])
        raise NotEnoughHistoryError(
            f"{target}: {len(have)} {frequency} as-of dates with {worst}-day labels "
            f"({_span(have)}) do not fit {wanted.describe()} with {setting_name('fit_to_history')}"
            f" off: that backtest needs {n} dates, {_history(days)} of history. Lower "
            f"{setting_name('valid_dates')}, {setting_name('calib_dates')}, "
            f"{setting_name('test_dates')} or {setting_name('n_folds')}, drop horizons "
            f"({setting_name('horizons')}), or turn {setting_name('fit_to_history')} on")
    if not fits:
        n, days = smallest_history(shortest, SMALLEST, frequency, lead_days)
        have = sorted(labelled[shortest])
        raise NotEnoughHistoryError(
            f"{target}: too little history for any of {setting_name('horizons')} "
            f"{list(horizons)}: the {shortest}-day labels cover {len(have)} {frequency} "
            f"as-of dates ({_span(have)}), and even the smallest backtest "
            f"({SMALLEST.describe()}, {SMALLEST.min_train_dates} training dates) needs "
            f"{n}: {_history(days)} of history. Bring more history, or set a shorter "
            f"horizon ({setting_name('horizons')}) or denser dates "
            f"({setting_name('as_of_frequency')}, e.g. W-MON); an explicit "
            f"{setting_name('as_of_start')} or {setting_name('as_of_end')} may narrow the "
            "range")
    skipped = tuple(h for h in horizons if h not in fits)
    notes = []
    for h in skipped:
        n, days = smallest_history(h, need, frequency, lead_days)
        notes.append(f"{target}: {h}-day horizon skipped: {len(labelled[h])} labelled as-of dates,"
                     f" it needs {n} (about {math.ceil(days / 30.44)} months of history); "
                     f"see {flag_name('horizons')}")
    dates = sorted(labelled[max(fits)])
    if not shrink:
        exact = {h: _folds(dates, h, wanted) for h in fits}
        if any(v is None for v in exact.values()):  # cannot happen: a shorter gap fits more
            raise NotEnoughHistoryError(f"{target}: the horizons do not share {wanted.describe()}")
        return BacktestPlan(target, fits, (), wanted, wanted,
                            {h: v for h, v in exact.items() if v is not None})
    chosen = _largest_fit(dates, fits, wanted)
    assert chosen is not None  # SMALLEST fits every kept horizon
    windows, folds = chosen
    if windows != wanted:
        notes.append(f"{target}: backtest shrunk to {len(dates)} labelled as-of dates: "
                     f"{_sizes(windows)} (configured {_sizes(wanted)})")
    return BacktestPlan(target, fits, skipped, windows, wanted, folds, tuple(notes))


def _largest_fit(dates: Sequence[pd.Timestamp], horizons: Sequence[int], wanted: Windows
                 ) -> tuple[Windows, dict[int, list[TimeSplit]]] | None:
    sizes = sorted(itertools.product(range(wanted.test_dates, 0, -1),
                                     range(wanted.calib_dates, 0, -1),
                                     range(wanted.valid_dates, 0, -1)),
                   key=lambda tcv: (-sum(tcv), *(-x for x in tcv)))
    for n_folds in range(wanted.n_folds, 0, -1):
        for t, c, v in sizes:
            w = replace(wanted, valid_dates=v, calib_dates=c, test_dates=t, n_folds=n_folds,
                        min_train_dates=SMALLEST.min_train_dates)
            folds = {h: _folds(dates, h, w) for h in horizons}
            if all(f is not None for f in folds.values()):
                return w, {h: f for h, f in folds.items() if f is not None}
    return None
