"""A small LightGBM search inside a budget: successive halving over a few key parameters.

The configured parameters are a reasonable default, not a tuned one: a table with few rows wants
bigger leaves and more regularisation than one with many. `search_lightgbm` draws
`TrainingConfig.search_trials` configurations of the parameters that matter most on tabular
data (leaves, minimum rows per leaf, feature fraction, L2 penalty, learning rate), the
configured ones always among them, and runs successive halving (Jamieson and Talwalkar 2016):
every candidate gets a small tree budget, the best third by validation log loss gets three times
more, and so on until one candidate has the full `max_trees`. Each fit early-stops on the
validation rows, so a candidate's loss is its best round's within its budget.

Given a start (the raw log-odds of a logistic regression fitted on the same training rows), the
search also draws where the boosting begins: from the base rate, as LightGBM does by default,
or from the logistic fit, the trees then learning only what the line misses (LightGBM's
`init_score`). Where the signal is close to linear in the features and the events are few,
trees from the base rate spend their splits rebuilding the line; from the line, the few events
go to its bends and interactions. The early-stopping log loss decides, candidate by candidate.

Pure: it looks at the training and validation matrices it is given and nothing else (the caller
keeps calibration and test rows out of it), and it returns parameters; it fits no final model
and logs nothing. For a seed and a thread count the result is the same on every run, as long as
the trial count ends the search: a time budget (`search_seconds`) that cuts it short depends on
the machine's speed, and the result says when that happened.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from training.model import lgb_params
from training.settings import TrainingConfig

log = logging.getLogger(__name__)

# The space: each value chosen so the grid spans "few rows, strong regularisation" to "many
# rows, expressive trees"; num_leaves stops at 31 so serving's per-row SHAP stays cheap.
SPACE: dict[str, tuple[Any, ...]] = {
    "num_leaves": (4, 8, 16, 31),
    "min_child_samples": (10, 20, 40, 80, 160),
    "feature_fraction": (0.5, 0.7, 0.9, 1.0),
    "lambda_l2": (0.0, 1.0, 10.0, 50.0),
    "learning_rate": (0.02, 0.05, 0.1),
}
ETA = 3
"""Successive halving's rate: a third of the candidates survive each rung, with 3x the trees."""
MIN_ROUNDS = 20
"""Trees of the first rung at least."""
FASTEST_RATE = max(SPACE["learning_rate"])
"""A rung's budget is in trees at this learning rate: a slower candidate gets proportionally
more trees (up to `max_trees`), so an early rung compares how far each has learnt rather than
favouring the fastest learning rate."""


@dataclass
class SearchResult:
    params: dict[str, Any]
    """The chosen values of the searched parameters (`TrainingConfig` field names)."""
    num_trees: int
    """Best early-stopping round of the chosen candidate at the full budget."""
    valid_logloss: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Every fit: candidate index, its parameters, rung, tree budget, best round, log loss."""
    cut_by_time: bool = False
    """True when `search_seconds` ended the search before the last rung."""

    def config(self, cfg: TrainingConfig) -> TrainingConfig:
        """`cfg` with the chosen parameters (the tree cap stays: early stopping finds it)."""
        return cfg.model_copy(update=self.params)

    def summary(self) -> dict[str, Any]:
        """What a report or MLflow keeps of the search (not every trial)."""
        return {"params": self.params, "num_trees": self.num_trees,
                "valid_logloss": self.valid_logloss, "candidates": self.candidates,
                "fits": len(self.trials), "cut_by_time": self.cut_by_time}

    @property
    def candidates(self) -> int:
        return len({t["candidate"] for t in self.trials})


def candidate_configs(cfg: TrainingConfig, n: int, starts: Sequence[str] = ("constant",)
                      ) -> list[dict[str, Any]]:
    """The configured values (one per `num_leaves` candidate) first, then distinct draws from
    `SPACE` times `starts` with the config's seed, `n` in all (at least the configured ones)."""
    base = {"min_child_samples": cfg.min_child_samples, "feature_fraction": cfg.feature_fraction,
            "lambda_l2": cfg.lambda_l2, "learning_rate": cfg.learning_rate,
            "lightgbm_start": cfg.lightgbm_start if cfg.lightgbm_start in starts else starts[0]}
    out = [{"num_leaves": leaves, **base} for leaves in cfg.leaf_candidates]
    space = {**SPACE, "lightgbm_start": tuple(starts)}
    grid = [dict(zip(space, values, strict=True))
            for values in itertools.product(*space.values())]
    rng = np.random.default_rng(cfg.seed)
    seen = {tuple(sorted(c.items())) for c in out}
    for i in rng.permutation(len(grid)):
        if len(out) >= n:
            break
        key = tuple(sorted(grid[i].items()))
        if key not in seen:
            seen.add(key)
            out.append(grid[i])
    return out


def rung_rounds(n_candidates: int, max_trees: int) -> list[int]:
    """Tree budget of each rung: the last is `max_trees`, each earlier one a third of the next
    (never below `MIN_ROUNDS`), as many rungs as halving `n_candidates` down to one needs."""
    rungs = max(1, math.ceil(math.log(max(n_candidates, 1), ETA)) + 1)
    rounds = [max(1, min(max_trees, max(MIN_ROUNDS, round(max_trees / ETA ** (rungs - 1 - k)))))
              for k in range(rungs)]
    return sorted(set(rounds))


def search_lightgbm(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[str],
    cfg: TrainingConfig,
    monotone: Sequence[int] | None = None,
    *,
    start: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """The candidate with the lowest validation log loss after successive halving.

    `start`: gives the logistic fit's raw log-odds on the training and the validation rows,
    called once, when the first candidate that boosts from them is fitted (none may: the
    configured values come first); with it, half the space boosts from them, without it every
    candidate boosts from the base rate.

    `cfg.search_trials` candidates (1 or 0: only the configured values, still early-stopped
    here so the tree count is known); `cfg.search_seconds` bounds the wall time, checked before
    each fit, so the search ends within one fit of it with the best candidate of the last rung
    it completed.
    """
    names = list(features)

    def data(init: tuple[np.ndarray, np.ndarray] | None) -> tuple[lgb.Dataset, lgb.Dataset]:
        # One binned dataset per start serves every candidate: the pre-filter would fix the
        # features to the first candidate's minimum leaf size.
        train = lgb.Dataset(np.asarray(X_train, float), label=np.asarray(y_train, float),
                            feature_name=names, categorical_feature=list(categorical),
                            free_raw_data=False, params={"feature_pre_filter": False},
                            init_score=None if init is None else init[0])
        valid = lgb.Dataset(np.asarray(X_valid, float), label=np.asarray(y_valid, float),
                            reference=train, init_score=None if init is None else init[1])
        return train, valid

    sets = {"constant": data(None)}
    starts = ("constant",) if start is None else ("constant", "logistic")
    configs = candidate_configs(cfg, max(1, cfg.search_trials), starts)
    rounds = rung_rounds(len(configs), cfg.max_trees)
    began = clock()
    trials: list[dict[str, Any]] = []
    alive = list(range(len(configs)))
    scored: dict[int, tuple[float, int]] = {}
    cut = False
    for rung, budget in enumerate(rounds):
        this_rung: dict[int, tuple[float, int]] = {}
        for i in alive:
            if cfg.search_seconds is not None and trials and clock() - began > cfg.search_seconds:
                cut = True
                break
            params = lgb_params(cfg.model_copy(update=configs[i]), monotone,
                                configs[i]["num_leaves"])
            trees = min(cfg.max_trees,
                        math.ceil(budget * FASTEST_RATE / configs[i]["learning_rate"]))
            where = configs[i]["lightgbm_start"]
            if where not in sets:
                assert start is not None  # only drawn when there is one
                sets[where] = data(start())
            train, valid = sets[where]
            with warnings.catch_warnings():  # each candidate's params differ from the first's
                warnings.filterwarnings("ignore", "Overriding the parameters from Reference")
                booster = lgb.train(
                    params, train, num_boost_round=trees, valid_sets=[valid],
                    valid_names=["valid"], keep_training_booster=True,  # read, then dropped
                    callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
            best = int(booster.best_iteration or booster.current_iteration())
            loss = float(booster.best_score["valid"]["binary_logloss"])
            this_rung[i] = (loss, best)
            trials.append({"candidate": i, **configs[i], "rung": rung, "budget": trees,
                           "best_round": best, "valid_logloss": loss})
        if this_rung:
            scored = this_rung
        if cut or rung == len(rounds) - 1:
            break
        # Ties go to the earlier candidate: the configured values come first.
        ranked = sorted(scored, key=lambda i: (scored[i][0], i))
        alive = ranked[:max(1, math.ceil(len(ranked) / ETA))]
    winner = min(scored, key=lambda i: (scored[i][0], i))
    loss, best = scored[winner]
    if cut:
        log.warning("LightGBM search: the %.0f s budget ended it after %d fits",
                    cfg.search_seconds, len(trials))
    log.info("LightGBM search: %d candidates, %d fits, chose %s (%d trees, log loss %.4f)",
             len(configs), len(trials), configs[winner], best, loss)
    return SearchResult(params=dict(configs[winner]), num_trees=best, valid_logloss=loss,
                        trials=trials, cut_by_time=cut)
