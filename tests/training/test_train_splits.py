"""Time-based splits: everything a model learns from comes before what judges it, with a gap of
at least the horizon; the backtest rolls the origin back in time; never random folds."""

import pandas as pd
import pytest

from training.splits import (
    SMALLEST,
    NotEnoughHistoryError,
    Windows,
    in_window,
    plan_backtest,
    rolling_origin,
    smallest_history,
    time_split,
)

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


@pytest.mark.parametrize("horizon", [30, 90])
def test_a_fold_may_refit_on_every_date_whose_labels_close_before_calibration(horizon):
    s = time_split(MONTHS, horizon, valid_dates=2, calib_dates=2, test_dates=2)
    gap = pd.Timedelta(days=horizon)
    assert s.refit[:len(s.train)] == s.train
    assert len(s.refit) > len(s.train)  # the dates the early-stopping gap held back
    assert max(s.refit) + gap <= min(s.calib)
    later = [d for d in MONTHS if d > max(s.refit)]
    assert later[0] + gap > min(s.calib)  # and nothing more


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


# Ten months of data from 2024-01-01: monthly as-of dates from April (after the 90-day feature
# window) whose labels close by the data's end (2024-11-01).
TEN_MONTHS_END = pd.Timestamp("2024-11-01")
AS_OF = list(pd.date_range("2024-04-01", "2024-10-01", freq="MS"))


def _labelled(horizons=(30, 60, 90), end=TEN_MONTHS_END, dates=AS_OF):
    return {h: [d for d in dates if d + pd.Timedelta(days=h) <= end] for h in horizons}


def test_a_horizon_that_does_not_fit_is_skipped_with_a_note_and_the_windows_shrink():
    plan = plan_backtest("churn", _labelled(), Windows(2, 2, 2, 3), frequency="MS",
                         lead_days=90)
    assert plan.horizons == (30,) and plan.skipped == (60, 90)
    assert plan.windows.n_folds == plan.n_folds >= 1
    assert plan.windows != plan.wanted
    notes = " ".join(plan.notes)
    assert "90-day horizon skipped" in notes and "--horizons" in notes
    assert "backtest shrunk" in notes and "(configured 3 folds of 2 valid, 2 calib, 2 test" in notes
    for f in plan.folds[30]:
        assert max(f.calib) + pd.Timedelta(days=30) <= min(f.test)
        assert len(f.train) >= SMALLEST.min_train_dates


def test_the_most_folds_are_kept_before_the_windows_are_widened():
    plan = plan_backtest("churn", _labelled((30,)), Windows(2, 2, 2, 3), frequency="MS")
    assert plan.n_folds == 3
    assert plan.windows.describe() == "valid_dates=1, calib_dates=1, test_dates=1, n_folds=3"


def test_a_history_that_fits_the_configured_windows_keeps_them_without_notes():
    plan = plan_backtest("churn", _labelled(end=MONTHS[-1] + pd.Timedelta(days=31),
                                            dates=MONTHS), Windows(2, 2, 2, 3), frequency="MS")
    assert plan.horizons == (30, 60, 90) and plan.skipped == ()
    assert plan.windows == Windows(2, 2, 2, 3) and plan.notes == ()
    assert plan.folds[90][0].test == plan.folds[30][0].test  # one shared test window


def test_too_little_history_names_the_settings_and_the_smallest_history_that_works():
    short = _labelled(end=pd.Timestamp("2024-07-01"), dates=AS_OF[:3])
    with pytest.raises(NotEnoughHistoryError) as err:
        plan_backtest("churn", short, Windows(2, 2, 2, 3), frequency="MS", lead_days=90)
    msg = str(err.value)
    assert "training.horizons (--horizons)" in msg and "--as-of-frequency" in msg
    n, days = smallest_history(30, SMALLEST, "MS", lead_days=90)
    assert f"needs {n}: {days} days (about" in msg and "months) of history" in msg


def test_without_fit_to_history_the_configured_windows_must_fit_or_the_error_names_them():
    with pytest.raises(NotEnoughHistoryError) as err:
        plan_backtest("churn", _labelled(), Windows(2, 2, 2, 3), frequency="MS", shrink=False)
    msg = str(err.value)
    for flag in ("--valid-dates", "--calib-dates", "--test-dates", "--n-folds",
                 "--fit-to-history"):
        assert flag in msg


@pytest.mark.parametrize("horizon", [30, 60, 90])
def test_the_smallest_history_is_exactly_enough(horizon):
    n, days = smallest_history(horizon, SMALLEST, "MS", lead_days=90)
    dates = list(pd.date_range("2024-01-01", periods=n, freq="MS"))
    assert time_split(dates, horizon, valid_dates=1, calib_dates=1, test_dates=1)
    with pytest.raises(NotEnoughHistoryError):
        time_split(dates[:-1], horizon, valid_dates=1, calib_dates=1, test_dates=1)
    assert days == 90 + (dates[-1] - dates[0]).days + horizon


def test_without_fit_to_history_a_history_that_fits_keeps_every_configured_size():
    plan = plan_backtest("churn", _labelled(end=MONTHS[-1] + pd.Timedelta(days=31),
                                            dates=MONTHS), Windows(2, 2, 1, 2), frequency="MS",
                         shrink=False)
    assert plan.windows == Windows(2, 2, 1, 2) and plan.n_folds == 2 and plan.notes == ()
    with pytest.raises(NotEnoughHistoryError, match="90-day labels"):
        plan_backtest("churn", _labelled(end=MONTHS[12], dates=MONTHS[:12]),
                      Windows(2, 2, 2, 1), frequency="MS", shrink=False)
