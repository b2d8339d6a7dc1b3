"""Time-based splits: everything a model learns from comes before what judges it, with a gap of
at least the horizon; the backtest rolls the origin back in time; never random folds."""

import pandas as pd
import pytest

from training.splits import NotEnoughHistoryError, in_window, rolling_origin, time_split

MONTHS = list(pd.date_range("2023-01-01", "2024-12-01", freq="MS"))


@pytest.mark.parametrize("horizon", [30, 60, 90])
def test_windows_are_in_time_order_with_gaps_of_at_least_the_horizon(horizon):
    s = time_split(MONTHS, horizon, valid_dates=2, calib_dates=2, test_dates=2)
    gap = pd.Timedelta(days=horizon)
    assert max(s.train) + gap <= min(s.valid)
    assert max(s.valid) < min(s.calib)
    assert max(s.calib) + gap <= min(s.test)
    assert s.test == tuple(MONTHS[-2:])
    assert len(s.valid) == len(s.calib) == 2


def test_a_28_day_february_is_not_a_30_day_gap():
    dates = list(pd.date_range("2023-01-01", "2023-12-01", freq="MS"))
    s = time_split(dates, 30, valid_dates=1, calib_dates=1, test_dates=1)
    # test 2023-12-01, calib 2023-11-01, valid 2023-10-01, train must end by 2023-09-01
    assert s.train[-1] == pd.Timestamp("2023-09-01")
    feb = time_split(dates[:4], 30, valid_dates=1, calib_dates=1, test_dates=1, min_train_dates=1)
    # test 2023-04-01 (calib 2023-03-01 is 31 days before); valid 2023-02-01; the only train
    # candidate 2023-01-01 is 31 days before valid: allowed. Moving to a 28-day gap is not.
    assert feb.train == (pd.Timestamp("2023-01-01"),)
    with pytest.raises(NotEnoughHistoryError):
        time_split(dates[1:5], 30, valid_dates=1, calib_dates=1, test_dates=1, min_train_dates=1)


def test_the_backtest_rolls_the_test_window_back_one_window_per_fold():
    folds = rolling_origin(MONTHS, 90, 3, valid_dates=2, calib_dates=2, test_dates=2)
    assert [f.fold for f in folds] == [0, 1, 2]
    assert folds[0].test == tuple(MONTHS[-2:])
    assert folds[1].test == tuple(MONTHS[-4:-2])
    assert folds[2].test == tuple(MONTHS[-6:-4])
    for f in folds:
        assert max(f.calib) + pd.Timedelta(days=90) <= min(f.test)
        assert max(f.train) + pd.Timedelta(days=90) <= min(f.valid)


def test_folds_that_no_longer_fit_the_history_are_dropped_but_one_is_required():
    short = MONTHS[:15]
    folds = rolling_origin(short, 90, 5, valid_dates=2, calib_dates=2, test_dates=2)
    assert 1 <= len(folds) < 5
    with pytest.raises(NotEnoughHistoryError, match="too few"):
        rolling_origin(MONTHS[:6], 90, 3, valid_dates=2, calib_dates=2, test_dates=2)


def test_window_membership_mask():
    s = pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]))
    assert in_window(s, [pd.Timestamp("2024-02-01")]).tolist() == [False, True, False]
