"""The oracle's state is what the data shows, not the latent value: `training.oracle.
estimate_state` regresses each row's latent churn and expansion state onto the row's features,
cross-fitted by account, and the oracle that reads it ranks below the one that reads the latent
state but far above chance."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.settings import FeatureConfig
from features.synth.generate import STATE_ESTIMATE_COLUMNS, generate_world
from tests.support.feature_frames import warehouse
from training.baselines import oracle_probabilities
from training.datasets import as_of_dates, build_training_set
from training.evaluate import roc_auc
from training.oracle import estimate_state

pytestmark = pytest.mark.xdist_group("oracle-state")


@pytest.fixture(scope="module")
def world():
    w = generate_world(500, date(2024, 1, 1), 480, seed=11)
    con = warehouse(w.tables)
    ts = build_training_set(con, as_of_dates(con, None, None, "MS", (90,)), FeatureConfig(),
                            (90,))
    return w.truth, ts.frame, ts.features


def test_every_row_gets_an_estimate_of_the_state_the_oracle_reads(world):
    truth, frame, features = world
    est = estimate_state(frame, features, truth)
    assert list(est.columns) == list(STATE_ESTIMATE_COLUMNS)
    assert est.index.equals(frame.index)
    assert est["end_logit"].notna().all()
    assert (est[["end_logit_var", "log_midterm_var"]] > 0).all().all()


def test_the_estimate_follows_the_latent_state(world):
    truth, frame, features = world
    est = estimate_state(frame, features, truth)
    day = pd.to_datetime(frame["as_of"]) - pd.Timedelta(days=1)
    latent = truth.set_index(["account_id", "date"])["end_logit"].reindex(
        pd.MultiIndex.from_arrays([frame["account_id"], day])).to_numpy()
    known = np.isfinite(latent)  # an account that starts on the as-of day has no state before it
    assert np.corrcoef(latent[known], est["end_logit"][known])[0, 1] > 0.7
    # the error the oracle averages out is the estimate's own
    assert est["end_logit_var"].iloc[0] == pytest.approx(
        np.var(latent[known] - est["end_logit"][known]))


def test_an_account_estimate_never_reads_its_own_state(world):
    truth, frame, features = world
    target = frame["account_id"].iloc[0]
    moved = truth.copy()
    own = moved["account_id"] == target
    moved.loc[own, "end_logit"] += 10.0
    before = estimate_state(frame, features, truth)
    after = estimate_state(frame, features, moved)
    rows = frame["account_id"] == target
    estimates = ["end_logit", "log_midterm", "log_expansion"]
    pd.testing.assert_frame_equal(before.loc[rows, estimates], after.loc[rows, estimates])
    assert not before["end_logit"].equals(after["end_logit"])  # the others' models moved


def test_no_truth_or_no_latent_state_gives_no_estimate(world):
    truth, frame, features = world
    assert estimate_state(frame, features, None) is None
    assert estimate_state(frame, features, truth.drop(columns="end_logit")) is None


def test_the_oracle_of_the_estimate_ranks_below_the_latent_one_and_far_above_chance(world):
    truth, frame, features = world
    rows = frame[frame["churn_90d"].notna()]
    y = rows["churn_90d"].to_numpy(float)
    est = estimate_state(frame, features, truth)
    seen = roc_auc(y, oracle_probabilities(truth, rows, 90, "churn", est))
    latent = roc_auc(y, oracle_probabilities(truth, rows, 90, "churn"))
    assert 0.7 < seen < latent


def test_a_churn_only_run_fits_only_the_churn_state_and_reports_each_fit(world):
    truth, frame, features = world
    ticks = []
    est = estimate_state(frame, features, truth, targets=("churn",),
                         progress=lambda done, total: ticks.append((done, total)))
    assert est["end_logit"].notna().all() and est["log_expansion"].isna().all()
    # Two parts of three folds each, the bar shown before the first fit.
    assert ticks == [(0, 6), *((d, 6) for d in range(1, 7))]
    full = estimate_state(frame, features, truth)
    np.testing.assert_array_equal(est["end_logit"], full["end_logit"])
