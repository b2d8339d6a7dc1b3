"""Fitting one model: small, early-stopped, reproducible, calibrated on its own window when a
recalibration carries over from one window to the next, and behaving as a churn model should
(fewer logins -> more risk; the account id does not matter)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.support.train_frames import fit_windows
from training.leakage import leakage_suspects
from training.model import fit_calibrator, fit_model, monotone_constraints, recalibration_check
from training.settings import TrainingConfig

FEATURES = ["logins_30d", "tickets_90d", "nps_last", "noise_feature", "segment", "attr_tier"]


@pytest.fixture(scope="module")
def windows():
    return fit_windows()


def _fit(windows, **cfg):
    train, valid, calib, _ = windows
    return fit_model(train, valid, calib, FEATURES, "churn_30d", TrainingConfig(**cfg), "1")


def test_the_model_ranks_later_unseen_dates_well(windows):
    bundle = _fit(windows)
    test = windows[3]
    assert roc_auc_score(test["churn_30d"], bundle.predict_proba(test)) > 0.75


def test_the_same_seed_gives_the_same_trees(windows):
    a, b = _fit(windows), _fit(windows)
    assert a.booster.model_to_string() == b.booster.model_to_string()


def test_trees_are_capped_and_early_stopping_keeps_only_useful_ones(windows):
    capped = _fit(windows, max_trees=7)
    assert capped.n_trees <= 7
    stopped = _fit(windows, learning_rate=0.5, max_trees=300, early_stopping_rounds=5)
    assert stopped.n_trees < 300
    assert stopped.metadata["trees"] == stopped.n_trees


def test_the_tree_size_is_the_candidate_with_the_lowest_early_stopping_loss(windows):
    grid = _fit(windows, num_leaves=(4, 8, 16))
    sel = grid.metadata["selection"]
    assert set(sel["valid_logloss"]) == {"4", "8", "16"}
    assert sel["num_leaves"] == int(min(sel["valid_logloss"], key=sel["valid_logloss"].get))
    # The kept model is exactly the one that candidate alone gives (one value: as before).
    alone = _fit(windows, num_leaves=sel["num_leaves"])
    assert alone.booster.model_to_string() == grid.booster.model_to_string()
    assert list(alone.metadata["selection"]["valid_logloss"]) == [str(sel["num_leaves"])]


def test_the_tree_size_is_chosen_without_the_calibration_window(windows):
    train, valid, calib, _ = windows
    flipped = calib.assign(churn_30d=1.0 - calib["churn_30d"])
    cfg = TrainingConfig(num_leaves=(4, 8, 16))
    a, b = (fit_model(train, valid, c, FEATURES, "churn_30d", cfg, "1") for c in (calib, flipped))
    assert a.metadata["selection"] == b.metadata["selection"]
    assert a.booster.model_to_string() == b.booster.model_to_string()


def test_a_champions_logged_params_refit_the_same_trees(windows):
    import json

    from training.model import model_params

    train, valid, calib, _ = windows
    champion = TrainingConfig(num_leaves=(4, 8), max_trees=40)
    logged = json.loads(json.dumps(model_params(champion)))  # MLflow's hs.params tag
    rerun = TrainingConfig(num_leaves=2).model_copy(update=logged)
    a, b = (fit_model(train, valid, calib, FEATURES, "churn_30d", c, "1")
            for c in (champion, rerun))
    assert a.booster.model_to_string() == b.booster.model_to_string()


def test_cross_validated_refits_choose_on_the_validation_rows_first(windows):
    train, valid, calib, _ = windows
    bundle = fit_model(train, valid, calib, FEATURES, "churn_30d",
                       TrainingConfig(num_leaves=(4, 8)), "1", refit_with_valid=True)
    sel = bundle.metadata["selection"]
    assert set(sel["valid_logloss"]) == {"4", "8"}
    leaves = [t["num_leaves"] for t in bundle.booster.dump_model()["tree_info"]]
    assert max(leaves) <= sel["num_leaves"]


def _window(rng, n, shift):
    """Booster log-odds and outcomes whose true log-odds are `shift` above them."""
    z = rng.normal(-3.0, 1.0, n)
    return z, (rng.random(n) < 1 / (1 + np.exp(-(z + shift)))).astype(float)


def test_isotonic_with_enough_calibration_positives_else_sigmoid():
    z, y = _window(np.random.default_rng(0), 2000, 0.8)
    assert fit_calibrator(z, y, min_positives=10).method == "isotonic"
    assert fit_calibrator(z, y, min_positives=10_000).method == "sigmoid"


def test_a_recalibration_is_kept_only_when_it_carries_over_to_the_next_window():
    rng = np.random.default_rng(0)
    # The booster under-predicts in both windows: a calibrator learnt on the first fixes the
    # second, so the model is recalibrated.
    for _ in range(5):
        biased = recalibration_check(*_window(rng, 2000, 0.8), *_window(rng, 2000, 0.8), 10)
        assert biased["recalibrate"]
        assert biased["brier_recalibrated"] < biased["brier_booster"]
    # Already calibrated: what isotonic learns from one window is mostly that window's noise,
    # so the booster's own probabilities are kept (but for the odd lucky window).
    kept = [recalibration_check(*_window(rng, 2000, 0.0), *_window(rng, 2000, 0.0), 10)
            ["recalibrate"] for _ in range(25)]
    assert sum(kept) <= 5


def test_a_fitted_model_records_its_recalibration_check(windows):
    bundle = _fit(windows)
    cal = bundle.metadata["calibration"]
    assert cal["check"]["recalibrate"] == (cal["method"] != "identity")


def test_a_calibration_window_without_events_predicts_its_rate():
    cal = fit_calibrator(np.array([-1.0, 0.0, 1.0]), np.zeros(3), 10)
    assert (cal.apply(np.array([-5.0, 5.0])) < 1e-5).all()


def test_calibrated_probabilities_match_the_event_rate_of_later_dates(windows):
    bundle = _fit(windows)
    test = windows[3]
    assert bundle.predict_proba(test).mean() == pytest.approx(test["churn_30d"].mean(), abs=0.04)


def test_fewer_logins_mean_a_higher_churn_probability(windows):
    bundle = _fit(windows)
    rows = windows[3].copy()
    fewer = rows.assign(logins_30d=rows["logins_30d"] * 0.3)
    assert bundle.predict_proba(fewer).mean() > bundle.predict_proba(rows).mean()


def test_monotone_churn_constraints_follow_the_registry_direction():
    cfg = TrainingConfig(monotone_churn=True)
    # logins and NPS: healthier when higher (risk falls); tickets: healthier when lower (risk
    # rises); an unregistered column, the segment and a custom attribute are neutral (free).
    assert monotone_constraints(FEATURES, "churn_60d", cfg) == [-1, 1, -1, 0, 0, 0]
    assert monotone_constraints(FEATURES, "expansion_60d", cfg) is None
    assert monotone_constraints(FEATURES, "churn_60d", TrainingConfig(monotone_churn=False)) is None
    assert monotone_constraints(["noise_feature", "segment"], "churn_30d", cfg) is None


@pytest.mark.parametrize("start", ["constant", "logistic"])
@pytest.mark.parametrize("column, factor, direction", [
    ("logins_30d", 1.5, -1), ("nps_last", 0.5, 1), ("tickets_90d", 2.0, 1)])
def test_a_monotone_churn_model_never_moves_against_the_registry_direction(
        windows, column, factor, direction, start):
    # Boosted from a logistic fit, the line's coefficients are bound to the same signs.
    bundle = _fit(windows, monotone_churn=True, lightgbm_start=start)
    assert bundle.kind == ("lightgbm" if start == "constant" else "lightgbm_on_logistic")
    rows = windows[3].copy()
    changed = rows.assign(**{column: rows[column] * factor})
    # Every row, not just on average: the constraint holds for each account.
    diff = bundle.predict_proba(changed) - bundle.predict_proba(rows)
    assert (direction * diff >= -1e-12).all()


def test_the_account_id_does_not_change_a_prediction(windows):
    bundle = _fit(windows)
    rows = windows[3].copy()
    renamed = rows.assign(account_id=[f"other-{i}" for i in range(len(rows))])
    np.testing.assert_array_equal(bundle.predict_proba(renamed), bundle.predict_proba(rows))
    assert "account_id" not in bundle.features


def test_censored_labels_are_refused_not_read_as_zero(windows):
    train, valid, calib, _ = windows
    censored = train.assign(churn_30d=np.where(np.arange(len(train)) % 2, np.nan, 0.0))
    with pytest.raises(ValueError, match="censored"):
        fit_model(censored, valid, calib, FEATURES, "churn_30d", TrainingConfig(), "1")


def test_the_leakage_guard_names_a_feature_that_is_the_label_in_disguise(windows):
    train = windows[0].copy()
    rng = np.random.default_rng(0)
    train["days_until_cancellation"] = np.where(train["churn_30d"] == 1,
                                                rng.uniform(0, 30, len(train)),
                                                rng.uniform(31, 400, len(train)))
    found = leakage_suspects(train, [*FEATURES, "days_until_cancellation"], "churn_30d", 0.98)
    assert [f["feature"] for f in found] == ["days_until_cancellation"]
    assert found[0]["roc_auc"] == pytest.approx(1.0)


def test_the_leakage_guard_ignores_identifier_like_text(windows):
    train = windows[0].assign(ref=lambda f: pd.Series(range(len(f)), index=f.index).astype(str))
    assert leakage_suspects(train, ["ref"], "churn_30d", 0.98) == []
