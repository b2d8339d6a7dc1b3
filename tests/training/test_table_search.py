"""The LightGBM search: the configured values are always a candidate, the trial count bounds it,
and a seed gives the same choice on every run."""

import numpy as np
import pytest

from training.search import candidate_configs, rung_rounds, search_lightgbm
from training.settings import TrainingConfig


@pytest.fixture(scope="module")
def matrices():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(900, 4))
    logit = 1.5 * x[:, 0] - np.where(x[:, 1] > 0.5, 1.0, 0.0) + 0.5 * x[:, 2] * x[:, 3]
    y = (rng.random(900) < 1 / (1 + np.exp(-logit))).astype(float)
    return x[:600], y[:600], x[600:], y[600:]


def _search(matrices, **update):
    cfg = TrainingConfig(search_seconds=None, max_trees=120, **update)
    x_tr, y_tr, x_va, y_va = matrices
    return search_lightgbm(x_tr, y_tr, x_va, y_va, ["a", "b", "c", "d"], [], cfg)


def test_the_same_seed_chooses_the_same_parameters_and_tree_count(matrices):
    first, second = _search(matrices, search_trials=7), _search(matrices, search_trials=7)
    assert first.params == second.params
    assert first.num_trees == second.num_trees
    assert first.trials == second.trials


def test_the_trial_count_is_the_number_of_candidates_tried(matrices):
    result = _search(matrices, search_trials=7)
    assert result.candidates == 7 and not result.cut_by_time
    # Successive halving: every candidate at the first rung, a third of them at the next.
    first_rung = [t for t in result.trials if t["rung"] == 0]
    assert len(first_rung) == 7
    assert len([t for t in result.trials if t["rung"] == 1]) == 3
    assert result.valid_logloss == min(t["valid_logloss"] for t in result.trials
                                       if t["rung"] == max(x["rung"] for x in result.trials))


def test_no_search_is_the_configured_values_early_stopped(matrices):
    result = _search(matrices, search_trials=1, num_leaves=8)
    cfg = TrainingConfig()
    assert result.params == {"num_leaves": 8, "min_child_samples": cfg.min_child_samples,
                             "feature_fraction": cfg.feature_fraction,
                             "lambda_l2": cfg.lambda_l2, "learning_rate": cfg.learning_rate,
                             "lightgbm_start": "constant"}
    assert 1 <= result.num_trees <= 120


def test_the_configured_values_come_first_and_the_draws_follow_the_seed():
    cfg = TrainingConfig(num_leaves=(4, 8), seed=1)
    configs = candidate_configs(cfg, 10)
    assert len(configs) == 10 and [c["num_leaves"] for c in configs[:2]] == [4, 8]
    assert len({tuple(sorted(c.items())) for c in configs}) == 10
    assert candidate_configs(cfg, 10) == configs
    assert candidate_configs(cfg.model_copy(update={"seed": 2}), 10)[2:] != configs[2:]


def test_a_time_budget_ends_the_search_with_the_best_candidate_so_far(matrices):
    ticks = iter(range(0, 10_000, 10))  # every fit appears to take 10 s
    cfg = TrainingConfig(search_trials=9, search_seconds=35, max_trees=60)
    x_tr, y_tr, x_va, y_va = matrices
    result = search_lightgbm(x_tr, y_tr, x_va, y_va, list("abcd"), [], cfg,
                             clock=lambda: next(ticks))
    assert result.cut_by_time
    # Started at 0 s, checked before each later fit: 10, 20, 30 s go on, 40 s > 35 s stops.
    assert len(result.trials) == 4
    assert result.valid_logloss == min(t["valid_logloss"] for t in result.trials)


def test_each_rung_has_three_times_the_trees_of_the_one_before_up_to_the_cap():
    assert rung_rounds(16, 300) == [20, 33, 100, 300]
    assert rung_rounds(1, 300) == [300]
