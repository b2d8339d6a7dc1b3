"""The backtest and the six models on a hand-made training set: shared test windows, monotone
horizons, censored rows left out, baselines side by side, a report that says what happened."""

import numpy as np
import pandas as pd
import pytest

from scoring.bundle import predict_horizons
from tests.support.train_frames import snapshot_frame, suite_training
from training import evaluate
from training.pipeline import build_report, metrics_rows, train_and_backtest

pytestmark = pytest.mark.xdist_group("train-pipeline")

HORIZONS = (30, 60, 90)


@pytest.fixture(scope="module")
def trained():
    ts = snapshot_frame(n_accounts=250, n_dates=22)
    # Some labels unknown inside the training windows too (censored): they must be left out.
    unknown = np.random.default_rng(2).random(len(ts.frame)) < 0.05
    ts.frame.loc[unknown, ts.labels] = np.nan
    # A fake rules score that ranks churn somewhat: 100 - noisy risk.
    rng = np.random.default_rng(1)
    rules = pd.Series(np.clip(50 + 2 * (ts.frame["logins_30d"] - 20) + rng.normal(0, 15,
                                                                                   len(ts.frame)),
                              0, 100), index=ts.frame.index)
    cfg = suite_training(max_trees=60)
    return ts, train_and_backtest(ts, cfg, rules=rules), cfg


def test_six_models_one_per_target_and_horizon(trained):
    _, results, _ = trained
    assert sorted(results) == sorted(f"{t}_{h}d" for t in ("churn", "expansion")
                                     for h in HORIZONS)


def test_every_horizon_of_a_target_is_tested_on_the_same_window(trained):
    _, results, _ = trained
    for t in ("churn", "expansion"):
        tests = {str(results[f"{t}_{h}d"].split["test"]) for h in HORIZONS}
        assert len(tests) == 1


def test_p30_le_p60_le_p90_for_every_row(trained):
    ts, results, _ = trained
    for t in ("churn", "expansion"):
        probs = predict_horizons({h: results[f"{t}_{h}d"].bundle for h in HORIZONS}, ts.frame)
        assert (np.diff(probs.to_numpy(), axis=1) >= 0).all()
        # and the held-out predictions the report is built on are the monotone ones
        y30 = results[f"{t}_30d"].test_predictions["model"]
        y90 = results[f"{t}_90d"].test_predictions["model"]
        assert (y90 >= y30).all()


def test_censored_rows_are_left_out_of_training_never_counted_as_zero(trained):
    ts, results, _ = trained
    f = ts.frame
    for label, r in results.items():
        # the registered model is refit on every labelled row, and on no censored one
        assert r.bundle.metadata["trained_on"]["rows"] == int(f[label].notna().sum())
    # The last as-of dates have no 90-day label at all: none of them is in any window.
    last = f["as_of"].max()
    assert f.loc[f["as_of"] == last, "churn_90d"].isna().all()
    assert all(pd.Timestamp(r.split["test"]["last"]) < last for r in results.values()
               if r.horizon == 90)


def test_the_model_and_its_baselines_are_measured_on_the_same_rows(trained):
    _, results, _ = trained
    for r in results.values():
        rows = {s: m["rows"] for s, m in r.test.items()}
        assert set(rows) == {"model", "logistic", "rules"}
        assert len(set(rows.values())) == 1
        # `test` is every fold's test rows pooled: more rows than any one fold's
        assert r.pooled == r.test
        assert r.test["model"]["rows"] > max(f["model"]["rows"] for f in r.folds)


def test_the_churn_model_beats_a_noisy_rules_score(trained):
    _, results, _ = trained
    for h in HORIZONS:
        r = results[f"churn_{h}d"]
        assert r.pooled["model"]["roc_auc"] > r.pooled["rules"]["roc_auc"]


def test_the_backtest_has_one_entry_per_fold_latest_first(trained):
    _, results, cfg = trained
    r = results["churn_90d"]
    assert len(r.folds) == cfg.n_folds
    firsts = [f["_test"][0] for f in r.folds]
    assert firsts == sorted(firsts, reverse=True)
    # the AUC promotion compares is the champion's pooled out-of-fold one, not a fold mean
    assert r.backtest_auc == pytest.approx(r.pooled[r.champion]["roc_auc"])


def test_the_report_holds_metrics_windows_segments_and_renders(trained):
    _, results, _ = trained
    report = build_report(results, {"mode": "unit"})
    m = report["models"]["churn_30d"]
    for key in ("split", "trees", "calibration", "test", "backtest", "segments", "reliability"):
        assert key in m
    assert set(m["segments"]) == {"enterprise", "mid-market", "smb"}
    md = evaluate.render_markdown(report)
    # `test` is the backtest's pooled out-of-fold rows: the candidates and the champion first
    assert "### Backtest, every fold's test rows pooled" in md and "### Candidates" in md
    assert "**Champion:**" in md and "By segment" in md and "Rolling-origin" in md
    rows = metrics_rows(report)
    assert {r["scorer"] for r in rows} == {"model", "logistic", "rules"}


def test_a_target_without_labels_trains_no_models():
    ts = snapshot_frame(n_accounts=120, n_dates=18)
    for h in HORIZONS:
        ts.frame[f"expansion_{h}d"] = np.nan
    results = train_and_backtest(ts, suite_training(max_trees=10, n_folds=1))
    assert sorted(results) == [f"churn_{h}d" for h in HORIZONS]


def test_extra_training_snapshots_only_ever_join_the_training_window():
    """Split dates carve the windows; the other dates (`train_as_of_frequency`) add training
    rows up to the training window's last date and never reach a later window."""
    from training.splits import rolling_origin

    ts = snapshot_frame(n_accounts=60, n_dates=22)
    monthly = tuple(ts.dates)
    extra = ts.frame.copy()
    extra["as_of"] = extra["as_of"] + pd.Timedelta(days=14)  # mid-month snapshots
    ts.frame = pd.concat([ts.frame, extra], ignore_index=True)
    ts.split_dates = monthly
    label = "churn_60d"
    assert set(ts.labelled_dates(label)) <= set(monthly)
    split = rolling_origin(ts.labelled_dates("churn_90d"), 60, 1)[0]
    rows = ts.training_rows(label, split.train)
    assert rows[label].notna().all()
    assert rows["as_of"].max() <= split.train[-1]
    assert (~rows["as_of"].isin(monthly)).any()  # the extra snapshots are in
    assert set(rows["as_of"][rows["as_of"].isin(monthly)]) == set(split.train)
    # without split dates the training rows are exactly the window's
    ts.split_dates = None
    plain = ts.training_rows(label, split.train)
    assert set(plain["as_of"]) == set(split.train)


@pytest.fixture(scope="module")
def refit():
    """A backtest whose fold models and out-of-fold calibration inputs are recorded."""
    import training.pipeline as pipeline

    ts = snapshot_frame(n_accounts=150, n_dates=20, seed=3)
    seen = {"folds": [], "calibration": []}
    fit, calibrate = pipeline.fit_model, pipeline.out_of_fold_calibrator

    def spy_fit(train, valid, calib, *args, **kwargs):
        bundle = fit(train, valid, calib, *args, **kwargs)
        seen["folds"].append(bundle)
        return bundle

    def spy_calibrate(parts, methods, min_positives):
        out = calibrate(parts, methods, min_positives)
        seen["calibration"].append((parts, out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "fit_model", spy_fit)
        mp.setattr(pipeline, "out_of_fold_calibrator", spy_calibrate)
        results = train_and_backtest(ts, suite_training(max_trees=40, targets=("churn",)),
                                     logistic=False)
    return ts, results, seen


def test_the_registered_model_saw_every_labelled_snapshot_up_to_the_last(refit):
    ts, results, _ = refit
    for label, r in results.items():
        labelled = ts.frame[ts.frame[label].notna()]
        seen = r.bundle.metadata["trained_on"]
        assert seen["last_as_of"] == labelled["as_of"].max().date().isoformat()
        assert seen["first_as_of"] == labelled["as_of"].min().date().isoformat()
        assert seen["rows"] == len(labelled) and seen["positives"] == int(labelled[label].sum())
        # later than anything the latest backtest fold trained on
        assert seen["last_as_of"] > r.split["train"]["last"]


def test_the_registered_tree_count_is_the_backtest_folds_median_best_round(refit):
    """The registered model takes the latest fold's searched parameters and the median best
    round of the folds whose search chose those same parameters."""
    _, results, seen = refit
    for label, r in results.items():
        folds = [b for b in seen["folds"] if b.label == label]
        assert len(folds) == len(r.folds)
        searched = folds[0].metadata["search"]["params"]  # folds run latest first
        assert r.bundle.metadata["search"] == searched
        same = [b for b in folds if b.metadata["search"]["params"] == searched]
        leaves = r.bundle.metadata["selection"]["num_leaves"]
        assert leaves == searched["num_leaves"]
        rounds = [b.metadata["selection"]["rounds"][str(leaves)] for b in same]
        assert r.bundle.n_trees == int(round(float(np.median(rounds))))
        assert r.bundle.metadata["selection"]["refit"]["rounds_by_fold"] == rounds


def test_the_registered_calibrator_is_fitted_on_out_of_fold_predictions(refit):
    ts, results, seen = refit
    for (parts, (calibrator, info)), (label, r) in zip(seen["calibration"], results.items(),
                                                       strict=True):
        folds = [b for b in seen["folds"] if b.label == label]
        assert r.bundle.calibrator == calibrator
        assert info["fitted_on"] == "out-of-fold" == r.bundle.metadata["calibration"]["fitted_on"]
        for fold_bundle, fold, (raw, y) in zip(folds, r.folds, parts, strict=True):
            rows = ts.frame[ts.frame["as_of"].isin(pd.to_datetime(fold["_test"]))]
            rows = rows[rows[label].notna()]
            # each fold model's raw predictions on its own test rows, never the refit model's
            np.testing.assert_allclose(raw, fold_bundle.predict_raw(rows))
            assert not np.allclose(raw, r.bundle.predict_raw(rows))
            np.testing.assert_array_equal(y, rows[label].to_numpy(float))
        assert info["rows"] == sum(f["model"]["rows"] for f in r.folds)
