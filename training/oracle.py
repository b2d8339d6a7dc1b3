"""What a generated world's data shows of its latent churn and expansion state: the input of
the oracle a model is measured against (`features.synth.generate.oracle_probability`).

The oracle is the best forecast the data allows, so it may not read state no table shows.
The generator's health, shocks and plan set each day's contract-end log-odds, early-termination
hazard and expansion hazard; the data shows them only through noisy views (usage, tickets,
surveys, touchpoints, the contract). Their estimate here is a regression of each latent value
on the day before the as-of date onto the entity's features, fitted on the latent value itself
(a continuous target on every row, which no model of the churn labels has), cross-fitted by
account so no account's estimate has seen its own state. The residual variance goes with the
estimate, for the oracle to average out. What is left between the model and this oracle is
what learning from the labels costs, with the features the model has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.bundle import category_levels, encode_frame

FOLDS = 3
PARAMS = {"objective": "regression", "learning_rate": 0.1, "num_leaves": 15, "max_bin": 63,
          "min_data_in_leaf": 40, "feature_fraction": 0.8, "verbose": -1}
ROUNDS = 150
"""Small on purpose: on a 3,000-account world (25,507 rows) 5 folds of 400 rounds at 31 leaves
gave the oracle the same ROC AUC to 0.002 at seven times the CPU (59 s against 8 s)."""
LATENT = ("end_logit", "midterm_hazard", "expansion_hazard")


def estimate_state(frame: pd.DataFrame, features: Sequence[str], truth: pd.DataFrame | None,
                   seed: int = 0, threads: int = 1,
                   targets: Sequence[str] = ("churn", "expansion"),
                   progress: Callable[[int, int], None] | None = None) -> pd.DataFrame | None:
    """One row per `frame` row (same index): `STATE_ESTIMATE_COLUMNS` of
    `features.synth.generate`, from the features of the row. None without a truth that has the
    latent state (a world from before it, or real data). `threads`: LightGBM's, as training's
    (`TrainingConfig.num_threads`). Only the parts `targets` read are fitted (churn: the
    contract-end log-odds and the early-termination hazard; expansion: its hazard); the others
    are missing, and the oracle reads the latent value there. `progress(done, total)` after
    each fold's fit."""
    if truth is None or not set(LATENT) <= set(truth.columns) or frame.empty:
        return None
    day = pd.to_datetime(frame["as_of"]).dt.normalize() - pd.Timedelta(days=1)
    latent = truth.set_index(["account_id", "date"])[list(LATENT)].reindex(
        pd.MultiIndex.from_arrays([frame["account_id"], day]))
    cats = category_levels(frame, features)
    X = encode_frame(frame, features, cats)
    folds = pd.factorize(frame["account_id"])[0] % FOLDS
    categorical = [list(features).index(c) for c in cats]
    parts = [*(("end_logit", "midterm_hazard") if "churn" in targets else ()),
             *(("expansion_hazard",) if "expansion" in targets else ())]
    done = 0
    if progress and parts:
        progress(0, FOLDS * len(parts))

    def fit(column: str) -> tuple[np.ndarray, float]:
        nonlocal done
        if column not in parts:
            return np.full(len(frame), np.nan), 0.0
        target = latent[column].to_numpy(np.float64)
        if column != "end_logit":  # the hazards on the log scale
            target = np.where(target > 0, np.log(np.where(target > 0, target, 1.0)), np.nan)
        known = np.isfinite(target)
        est = np.full(len(target), np.nan)
        for k in range(FOLDS):
            train, test = known & (folds != k), folds == k
            if train.sum() >= 2 * PARAMS["min_data_in_leaf"] and test.any():
                booster = lgb.train({**PARAMS, "seed": seed, "num_threads": threads},
                                    lgb.Dataset(X[train], target[train],
                                                categorical_feature=categorical),
                                    num_boost_round=ROUNDS)
                est[test] = booster.predict(X[test])
            done += 1
            if progress:
                progress(done, FOLDS * len(parts))
        residual = (target - est)[known & np.isfinite(est)]
        return est, float(np.var(residual)) if len(residual) else 0.0

    end, end_var = fit("end_logit")
    mid, mid_var = fit("midterm_hazard")
    grow, _ = fit("expansion_hazard")
    return pd.DataFrame({"end_logit": end, "end_logit_var": end_var, "log_midterm": mid,
                         "log_midterm_var": mid_var, "log_expansion": grow}, index=frame.index)
