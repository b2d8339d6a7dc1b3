"""LightGBM boosted from a logistic fit: the search draws the start only when it is given one,
the model is the line plus the trees in every output (probability, log-odds, contributions),
it survives a save and a load, and the line honours the churn models' monotone directions."""

import numpy as np
import pytest

from scoring.boosted import BoostedModel
from scoring.bundle import load_bundle, save_bundle
from tests.support.train_frames import fit_windows
from training.model import fit_model
from training.search import candidate_configs, search_lightgbm
from training.selection import linear_start
from training.settings import TrainingConfig

FEATURES = ["logins_30d", "tickets_90d", "nps_last", "noise_feature", "segment", "attr_tier"]


@pytest.fixture(scope="module")
def windows():
    return fit_windows()


@pytest.fixture(scope="module")
def boosted(windows):
    train, valid, calib, _ = windows
    return fit_model(train, valid, calib, FEATURES, "churn_30d",
                     TrainingConfig(lightgbm_start="logistic"), "1", start_C=0.3)


def _linear_world(n=4000, p=30, seed=0):
    """Many small linear effects and few events: what trees from the base rate learn slowly."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    logit = -3.0 + x @ rng.normal(0, 0.25, p)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def test_without_a_start_every_candidate_boosts_from_the_base_rate():
    configs = candidate_configs(TrainingConfig(), 16)
    assert {c["lightgbm_start"] for c in configs} == {"constant"}
    # The tree parameters drawn are the same as when the start is a choice's own dimension.
    both = candidate_configs(TrainingConfig(), 16, ("constant", "logistic"))
    assert {c["lightgbm_start"] for c in both} == {"constant", "logistic"}
    assert both[:3] == configs[:3]  # the configured values come first either way


def test_on_a_linear_world_the_search_boosts_from_the_logistic_fit():
    x, y = _linear_world()
    names = [f"f{j}" for j in range(x.shape[1])]
    tr, va = slice(0, 3000), slice(3000, None)
    cfg = TrainingConfig(search_seconds=None)
    line = linear_start(x[tr], y[tr], names, [], 1.0, 0)
    calls = []

    def start():
        calls.append(1)
        return line.predict(x[tr], raw_score=True), line.predict(x[va], raw_score=True)

    result = search_lightgbm(x[tr], y[tr], x[va], y[va], names, [], cfg, start=start)
    assert len(calls) == 1
    assert result.params["lightgbm_start"] == "logistic"
    alone = search_lightgbm(x[tr], y[tr], x[va], y[va], names, [], cfg)
    assert result.valid_logloss < alone.valid_logloss


def test_the_line_is_not_fitted_when_no_candidate_boosts_from_it():
    x, y = _linear_world(n=600)
    names = [f"f{j}" for j in range(x.shape[1])]

    def start():
        raise AssertionError("the line was fitted")

    # Three trials: the three configured candidates, which boost from the base rate.
    result = search_lightgbm(x[:400], y[:400], x[400:], y[400:], names, [],
                             TrainingConfig(search_trials=3), start=start)
    assert result.params["lightgbm_start"] == "constant"


def test_the_boosted_model_is_the_line_plus_the_trees(boosted, windows):
    assert boosted.kind == "lightgbm_on_logistic"
    assert isinstance(boosted.booster, BoostedModel)
    assert boosted.metadata["selection"]["start"] == {"kind": "logistic", "C": 0.3}
    x = boosted.matrix(windows[3])
    line, trees = boosted.booster.start, boosted.booster.trees
    raw = boosted.predict_raw(x)
    np.testing.assert_allclose(raw, line.predict(x, raw_score=True)
                               + trees.predict(x, raw_score=True))
    # Contributions: exact, additive, one column per feature then the base value.
    contrib = boosted.contributions(x)
    assert contrib.shape == (len(x), len(FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-9)


def test_a_boosted_bundle_survives_a_save_and_a_load(boosted, windows, tmp_path):
    save_bundle(boosted, tmp_path / "b")
    assert {p.name for p in (tmp_path / "b").iterdir()} == {"model.txt", "model.json",
                                                            "bundle.json"}
    again = load_bundle(tmp_path / "b", "1")
    assert again.kind == "lightgbm_on_logistic"
    np.testing.assert_array_equal(again.predict_proba(windows[3]),
                                  boosted.predict_proba(windows[3]))
    np.testing.assert_array_equal(again.contributions(windows[3]),
                                  boosted.contributions(windows[3]))


def test_saving_another_kind_over_a_boosted_bundle_leaves_no_stale_file(boosted, windows,
                                                                         tmp_path):
    save_bundle(boosted, tmp_path / "b")
    train, valid, calib, _ = windows
    plain = fit_model(train, valid, calib, FEATURES, "churn_30d", TrainingConfig(), "1")
    save_bundle(plain, tmp_path / "b")
    assert not (tmp_path / "b" / "model.json").exists()
    assert load_bundle(tmp_path / "b", "1").kind == "lightgbm"


def test_the_line_keeps_a_constrained_feature_on_the_side_of_its_direction():
    # The data say risk rises with f0; the constraint says it falls (-1): the coefficient stops
    # at 0, while the free feature f1 keeps the sign the data give it.
    x, _ = _linear_world(p=2, seed=1)
    rng = np.random.default_rng(2)
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(-2.0 + x[:, 0] + x[:, 1])))).astype(float)
    free = linear_start(x, y, ["f0", "f1"], [], 1.0, 0)
    bound = linear_start(x, y, ["f0", "f1"], [], 1.0, 0, monotone=[-1, 0])
    assert free.coef[0] > 0.5 and free.coef[1] > 0.5
    assert bound.coef[0] == pytest.approx(0.0, abs=1e-9) and bound.coef[1] > 0.5


def test_refit_with_the_validation_rows_refits_the_line_on_them_too(windows):
    train, valid, calib, test = windows
    bundle = fit_model(train, valid, calib, FEATURES, "churn_30d",
                       TrainingConfig(lightgbm_start="logistic"), "1", refit_with_valid=True)
    assert bundle.kind == "lightgbm_on_logistic"
    assert bundle.metadata["selection"]["refit"]["rows"] == len(train) + len(valid)
    assert "check" not in bundle.metadata["calibration"]  # the refit saw the early-stopping rows
    assert np.isfinite(bundle.predict_proba(test)).all()
