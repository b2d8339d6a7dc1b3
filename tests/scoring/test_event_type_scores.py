"""A score is made with exactly the event types its models were trained on: the scoring
pipeline builds those, whatever the source's own most frequent types are (a request's own
activity, a warehouse whose usage has moved on), and builds none the models do not read."""

from __future__ import annotations

import numpy as np

from features.settings import FeatureConfig
from scoring.health.profiles import load_rules
from scoring.model_set import model_set
from scoring.pipeline import Scorer, feature_config, score_accounts
from tests.support.feature_frames import T, hand_tables, warehouse
from tests.support.train_frames import snapshot_frame
from training.settings import TrainingConfig

FEATURES = ["logins_30d", "event_y_30d", "event_billing_downgrade_viewed_90d"]


def _models():
    from training.model import fit_model

    frame = snapshot_frame(n_accounts=200, n_dates=12, seed=5).frame.rename(columns={
        "tickets_90d": FEATURES[1], "noise_feature": FEATURES[2]})
    rows = frame[frame["churn_90d"].notna()]
    seen = np.sort(rows["as_of"].unique())
    parts = [rows[rows["as_of"].isin(p)] for p in (seen[:-4], seen[-4:-2], seen[-2:])]
    cfg = TrainingConfig(num_threads=1, max_trees=20, min_child_samples=20)
    return model_set({"churn_90d": fit_model(*parts, FEATURES, "churn_90d", cfg, "1")})


def test_the_pipeline_builds_the_models_event_types_and_scores_with_them():
    scorer = Scorer(rules=load_rules(), features=FeatureConfig(), models=_models())
    assert set(feature_config(scorer).event_types) == {"y", "billing_downgrade_viewed"}
    scored = score_accounts(warehouse(hand_tables()), ["a"], T, scorer, trend=False)
    events = [c for c in scored.features.columns if c.startswith("event_")]
    # y and the type the hand-made data lacks, not the data's own top types (x, z, w)
    assert {c for c in events if c.endswith("_7d")} == {"event_y_7d",
                                                        "event_billing_downgrade_viewed_7d"}
    assert len(events) == 12
    assert scored.features.loc[0, "event_y_30d"] == 1
    assert scored.features.loc[0, "event_billing_downgrade_viewed_90d"] == 0
    assert 0 < scored.probabilities.loc[0, "churn_90d"] < 1


def test_without_models_the_settings_choose_the_event_types():
    scorer = Scorer(rules=load_rules(), features=FeatureConfig(top_event_types=1))
    assert feature_config(scorer).event_types is None
    scored = score_accounts(warehouse(hand_tables()), ["a"], T, scorer, trend=False)
    assert [c for c in scored.features.columns if c.endswith("_90d") and
            c.startswith("event_")] == ["event_x_90d"]
