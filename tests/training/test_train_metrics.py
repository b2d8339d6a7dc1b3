"""Evaluation metrics, checked against values computed by hand."""

import json

import numpy as np
import pytest

from training.evaluate import (
    binary_metrics,
    by_segment,
    expected_calibration_error,
    jsonable,
    recall_at_top,
    reliability_curve,
    render_markdown,
    summarise_folds,
    top_decile_lift,
)


def test_top_decile_lift_is_the_event_rate_in_the_top_tenth_over_the_base_rate():
    # 20 rows, 4 events; the top 2 rows by score are both events: rate 1.0 vs base 0.2 -> 5
    y = np.array([1, 1] + [0] * 14 + [1, 1, 0, 0])
    score = np.arange(20, 0, -1, dtype=float)
    assert top_decile_lift(y, score) == pytest.approx(5.0)
    assert recall_at_top(y, score) == pytest.approx(0.5)


def test_tied_scores_share_the_top_decile_in_proportion():
    # Every score tied: the top decile holds the base rate in expectation, lift 1.
    y = np.array([1] * 5 + [0] * 15)
    assert top_decile_lift(y, np.zeros(20)) == pytest.approx(1.0)
    # Constant scores never look better than random, however the rows are ordered.
    assert top_decile_lift(y[::-1], np.zeros(20)) == pytest.approx(1.0)


def test_a_perfectly_calibrated_forecast_has_zero_calibration_error():
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(y, p) == pytest.approx(0.0)


def test_calibration_error_is_the_row_weighted_gap_per_bin():
    # Bin [0.1, 0.2): 10 rows predicted 0.15, 5 events (0.5): gap 0.35.
    # Bin [0.9, 1.0]: 10 rows predicted 0.95, 10 events: gap 0.05. Weighted: 0.2
    p = np.array([0.15] * 10 + [0.95] * 10)
    y = np.array([1] * 5 + [0] * 5 + [1] * 10)
    assert expected_calibration_error(y, p) == pytest.approx(0.2)
    curve = reliability_curve(y, p)
    assert curve["rows"].tolist() == [10, 10]
    assert curve["observed"].tolist() == [0.5, 1.0]


def test_rankings_that_are_not_probabilities_get_no_calibration_metrics():
    y = np.array([0, 1, 0, 1])
    m = binary_metrics(y, np.array([10.0, 80.0, 20.0, 60.0]), probability=False)
    assert m["roc_auc"] == 1.0 and m["brier"] is None and m["ece"] is None


def test_a_single_class_has_no_auc_rather_than_an_error():
    m = binary_metrics(np.zeros(5), np.linspace(0, 1, 5))
    assert m["roc_auc"] is None and m["positives"] == 0


def test_segments_are_measured_separately_and_small_ones_skipped():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100).astype(float)
    seg = np.array(["smb"] * 80 + ["enterprise"] * 20)
    out = by_segment(y, {"model": y * 0.8 + 0.1}, seg, min_rows=30)
    assert list(out) == ["smb"]
    assert out["smb"]["model"]["roc_auc"] == 1.0


def test_fold_summaries_and_the_markdown_report():
    folds = [{"model": binary_metrics(np.array([0, 1, 0, 1]), np.array([.1, .9, .2, .7]))},
             {"model": binary_metrics(np.array([0, 1, 0, 1]), np.array([.1, .15, .2, .7]))}]
    summary = summarise_folds(folds)
    assert summary["model"]["roc_auc"]["mean"] == pytest.approx(0.875)
    report = {"run": {"mode": "test"}, "warnings": ["w1"], "models": {"churn_30d": {
        "test": {"model": folds[0]["model"]}, "split": {"scheme": "unit"},
        "backtest": {"folds": folds, "summary": summary}}}}
    md = render_markdown(report)
    assert "## churn_30d" in md and "| model |" in md and "w1" in md
    json.dumps(jsonable({"x": np.float64("nan"), "y": [np.int64(3)]}), allow_nan=False)


def _top_share_by_groups(y, score, share):
    """The top share's expected positives group by group, ties split (the definition)."""
    k = max(1, int(np.ceil(share * len(y))))
    taken, positives = 0, 0.0
    for s in sorted(set(score[~np.isnan(score)]), reverse=True):
        m = score == s
        count, pos = int(m.sum()), float(y[m].sum())
        if taken + count <= k:
            taken, positives = taken + count, positives + pos
        else:
            return positives + pos * (k - taken) / count
    return positives


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_numpy_metrics_equal_scikit_learns(seed):
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    rng = np.random.default_rng(seed)
    n = 3000
    y = (rng.random(n) < 0.08).astype(float)
    for p in (rng.random(n) * 0.3 + 0.2 * y,               # continuous
              np.round(rng.random(n) * 0.3 + 0.1 * y, 2),  # many ties
              np.floor(rng.random(n) * 4) / 4):            # four levels
        m = binary_metrics(y, p)
        assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        expected = _top_share_by_groups(y, p, 0.1)
        assert m["top_decile_lift"] == pytest.approx(expected / 300 / y.mean(), abs=1e-12)
        assert m["recall_at_10pct"] == pytest.approx(expected / y.sum(), abs=1e-12)
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
        gaps = [(idx == b).sum() * abs(p[idx == b].mean() - y[idx == b].mean())
                for b in range(10) if (idx == b).any()]
        assert m["ece"] == pytest.approx(sum(gaps) / n, abs=1e-12)
    with_nan = np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
    keep = ~np.isnan(with_nan)
    assert binary_metrics(y, with_nan)["roc_auc"] == pytest.approx(
        roc_auc_score(y[keep], with_nan[keep]), abs=1e-12)
