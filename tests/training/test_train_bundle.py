"""The model bundle: what serving loads. It round-trips, encodes categories the same way every
time, and refuses inputs that do not match what the model was trained on."""

import numpy as np
import pytest

from scoring.bundle import (
    BundleMismatchError,
    Calibrator,
    load_bundle,
    load_bundles,
    monotone_horizons,
    predict_horizons,
    save_bundle,
)
from tests.support.train_frames import snapshot_frame
from training.model import fit_model
from training.settings import TrainingConfig

pytestmark = pytest.mark.xdist_group("train-bundle")

FEATURES = ["logins_30d", "tickets_90d", "nps_last", "noise_feature", "segment", "attr_tier"]


@pytest.fixture(scope="module")
def trained():
    ts = snapshot_frame(n_accounts=200, n_dates=12)
    f = ts.frame[ts.frame["churn_30d"].notna()]
    dates = sorted(f["as_of"].unique())
    part = lambda ds: f[f["as_of"].isin(ds)]  # noqa: E731
    bundle = fit_model(part(dates[:7]), part(dates[7:9]), part(dates[9:]), FEATURES, "churn_30d",
                       TrainingConfig(max_trees=40), feature_set_version="1")
    return bundle, f


def test_a_saved_bundle_predicts_exactly_what_it_predicted_before(trained, tmp_path):
    bundle, frame = trained
    save_bundle(bundle, tmp_path / "churn_30d")
    loaded = load_bundle(tmp_path / "churn_30d", feature_set_version="1")
    assert loaded.features == bundle.features
    assert loaded.categories == bundle.categories
    np.testing.assert_allclose(loaded.predict_proba(frame), bundle.predict_proba(frame))
    assert (tmp_path / "churn_30d" / "model.txt").read_text().startswith("tree")


def test_numpy_and_frame_inputs_give_the_same_probabilities(trained):
    bundle, frame = trained
    np.testing.assert_allclose(bundle.predict_proba(bundle.matrix(frame)),
                               bundle.predict_proba(frame))


def test_contributions_add_up_to_the_raw_log_odds(trained):
    bundle, frame = trained
    contrib = bundle.contributions(frame.head(50))
    assert contrib.shape == (50, len(FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), bundle.predict_raw(frame.head(50)), atol=1e-9)


def test_a_frame_missing_a_feature_is_refused_naming_it(trained):
    bundle, frame = trained
    with pytest.raises(BundleMismatchError, match="nps_last"):
        bundle.predict_proba(frame.drop(columns=["nps_last"]))


def test_an_array_of_the_wrong_width_is_refused(trained):
    bundle, _ = trained
    with pytest.raises(BundleMismatchError, match="expects 6 features"):
        bundle.predict_proba(np.zeros((2, 5)))


def test_a_bundle_of_another_feature_set_version_is_refused(trained, tmp_path):
    bundle, _ = trained
    save_bundle(bundle, tmp_path / "m")
    with pytest.raises(BundleMismatchError, match="feature-set version '1'.*version '2'"):
        load_bundle(tmp_path / "m", feature_set_version="2")


def test_a_folder_without_a_bundle_says_to_train_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="healthscore train"):
        load_bundle(tmp_path)
    with pytest.raises(FileNotFoundError, match="healthscore train"):
        load_bundles(tmp_path)


def test_category_codes_do_not_depend_on_the_frames_own_category_order(trained):
    bundle, frame = trained
    rows = frame.head(100).copy()
    shuffled = rows.copy()
    shuffled["segment"] = shuffled["segment"].cat.reorder_categories(
        list(reversed(shuffled["segment"].cat.categories)))
    as_text = rows.copy()
    as_text["segment"] = as_text["segment"].astype(str)
    p = bundle.predict_proba(rows)
    np.testing.assert_allclose(bundle.predict_proba(shuffled), p)
    np.testing.assert_allclose(bundle.predict_proba(as_text), p)


def test_an_unseen_category_is_scored_as_missing(trained):
    bundle, frame = trained
    rows = frame.head(20).copy()
    unseen, missing = rows.copy(), rows.copy()
    unseen["segment"] = "a segment nobody trained on"
    missing["segment"] = None
    np.testing.assert_allclose(bundle.predict_proba(unseen), bundle.predict_proba(missing))


def test_probabilities_are_monotone_across_horizons_after_the_running_maximum():
    raw = np.array([[0.3, 0.2, 0.4], [0.1, 0.2, 0.15], [0.5, 0.5, 0.5]])
    mono = monotone_horizons(raw)
    assert (np.diff(mono, axis=1) >= 0).all()
    np.testing.assert_allclose(mono, [[0.3, 0.3, 0.4], [0.1, 0.2, 0.2], [0.5, 0.5, 0.5]])


def test_predict_horizons_names_columns_by_label_and_is_monotone(trained):
    bundle, frame = trained
    # The same model at two "horizons" with different calibrations: the later one is lower on
    # purpose, the running maximum must lift it.
    low = type(bundle)(**{**bundle.__dict__, "label": "churn_60d",
                          "calibrator": Calibrator("sigmoid", a=1.0, b=-2.0)})
    out = predict_horizons({30: bundle, 60: low}, frame)
    assert list(out.columns) == ["churn_30d", "churn_60d"]
    assert (out["churn_60d"] >= out["churn_30d"]).all()


def test_isotonic_calibration_keeps_the_boosters_order():
    cal = Calibrator("isotonic", x=(0.0, 0.5, 1.0), y=(0.1, 0.1, 0.9))
    z = np.array([-3.0, -2.0, -1.0])  # all inside the flat step
    p = cal.apply(z)
    assert (np.diff(p) > 0).all()
    np.testing.assert_allclose(p, 0.1, atol=1e-5)
