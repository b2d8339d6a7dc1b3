"""Fitting one model: LightGBM with early stopping, then calibration on its own window.

`fit_model` takes the training, early-stopping and calibration rows of one label (censored rows
already dropped), fits a small LightGBM booster (categorical features natively, deterministic for
a seed and a fixed thread count), keeps only the trees up to the best early-stopping iteration
(of several `num_leaves` candidates, the one with the lowest early-stopping log loss), and fits
a calibrator on the calibration window: isotonic when that window has enough positives, else
sigmoid (Platt). When the early-stopping window is held out from the trees (time splits), a
recalibration is kept only if it carries over from one window to the next (see
`recalibration_check`); otherwise the booster's own probabilities stand. The result is a
`scoring.bundle.Bundle`, the format serving loads.

`refit_model` is the registered model of a time-split backtest: one booster fitted on every
labelled row with the leaves and tree count the backtest folds chose (`refit_choice`), and the
calibrator fitted on the folds' out-of-fold predictions (`out_of_fold_calibrator`), never on
rows the booster saw.

It does not choose dates (training.splits), evaluate (training.evaluate) or log anything to
MLflow (training.tracking).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from features.registry import feature
from scoring.boosted import BoostedModel
from scoring.bundle import Bundle, Calibrator, category_levels, encode_frame
from scoring.linear import LinearModel
from training.selection import base_logit, linear_start, most_chosen
from training.settings import TrainingConfig

log = logging.getLogger(__name__)

# The LightGBM settings a config controls; logged with every model and reused to re-run a
# champion's configuration on a new backtest.
PARAM_FIELDS = ("num_leaves", "learning_rate", "max_trees", "min_child_samples",
                "feature_fraction", "lambda_l2", "early_stopping_rounds", "seed", "num_threads",
                "isotonic_min_positives", "monotone_churn", "monotone_method", "lightgbm_start")


def model_params(cfg: TrainingConfig) -> dict[str, Any]:
    """The model-relevant part of the training config (what makes two models comparable)."""
    return {k: getattr(cfg, k) for k in PARAM_FIELDS}


def monotone_constraints(features: Sequence[str], label: str, cfg: TrainingConfig
                         ) -> list[int] | None:
    """LightGBM monotone constraints for `label`, or None when it is not constrained.

    Churn risk falls as a healthier-when-higher feature rises (-1) and rises with a
    healthier-when-lower one (+1); neutral features (direction None) and custom attributes stay
    free (0). Only churn models: the registry's direction is about health, and expansion is not
    monotone in health (a healthy account at its seat limit expands, a healthy small one may not).
    """
    if not cfg.monotone_churn or not label.startswith("churn"):
        return None
    out = []
    for name in features:
        try:
            better = feature(name).higher_is_healthier
        except KeyError:  # a bring-your-own-table column: no registered direction
            better = None
        out.append(0 if better is None else (-1 if better else 1))
    return out if any(out) else None


def lgb_params(cfg: TrainingConfig, monotone: Sequence[int] | None = None,
               num_leaves: int | None = None) -> dict[str, Any]:
    """LightGBM parameters; `num_leaves` one candidate (default: the config's first)."""
    extra: dict[str, Any] = {}
    if monotone is not None:
        extra = {"monotone_constraints": list(monotone),
                 "monotone_constraints_method": cfg.monotone_method}
    return {
        **extra,
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": cfg.learning_rate,
        "num_leaves": num_leaves if num_leaves is not None else cfg.leaf_candidates[0],
        "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction,
        "feature_fraction_seed": cfg.seed,
        "lambda_l2": cfg.lambda_l2,
        "seed": cfg.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": cfg.num_threads,
        "verbose": -1,
    }


def fit_booster(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[str],
    cfg: TrainingConfig,
    refit_with_valid: bool = False,
    monotone: Sequence[int] | None = None,
    refit_on: tuple[np.ndarray, np.ndarray] | None = None,
    init: dict[str, np.ndarray] | None = None,
) -> tuple[lgb.Booster, dict[str, Any]]:
    """Fit with early stopping on the validation rows; return a booster cut at the best round
    and how its tree size was chosen.

    Each `num_leaves` candidate is early-stopped on the validation rows and the one with the
    lowest validation log loss at its best round is kept (the first listed on a tie). The
    validation rows are the only ones the choice sees: in a time split they lie before the
    calibration and test windows, so neither is looked at (nested selection).

    `refit_with_valid` then refits the chosen candidate on training plus validation rows with
    the tree count scaled to the larger set. Only for exchangeable rows (cross-validation): in a
    time split the validation labels reach into the calibration window and would leak into it.
    `refit_on` (X, y): refit the chosen candidate on these rows instead, the tree count scaled
    the same way: in a time split, the training rows and the later ones whose labels close
    before the calibration window (`refit_rows`).
    `monotone`: one LightGBM monotone constraint per feature (see `monotone_constraints`).
    `init`: the raw log-odds the boosting starts from on the `train`, `valid` and `refit` rows
    (LightGBM's `init_score`; the returned trees exclude it).
    """
    names = list(features)
    init = init or {}
    train = lgb.Dataset(X_train, label=y_train, feature_name=names,
                        categorical_feature=list(categorical), free_raw_data=False,
                        init_score=init.get("train"))
    valid = lgb.Dataset(X_valid, label=y_valid, reference=train, init_score=init.get("valid"))
    losses: dict[str, float] = {}
    rounds: dict[str, int] = {}
    chosen: tuple[float, int, lgb.Booster, int] | None = None
    for leaves in cfg.leaf_candidates:
        candidate = lgb.train(
            lgb_params(cfg, monotone, leaves), train, num_boost_round=cfg.max_trees,
            valid_sets=[valid], valid_names=["valid"],
            # The kept trees are re-loaded from text below: no round trip through text here.
            keep_training_booster=True,
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        best_round = candidate.best_iteration or candidate.current_iteration()
        loss = float(candidate.best_score["valid"]["binary_logloss"])
        losses[str(leaves)], rounds[str(leaves)] = loss, best_round
        if chosen is None or loss < chosen[0]:
            chosen = (loss, leaves, candidate, best_round)
    assert chosen is not None  # the config guarantees one candidate at least
    _, leaves, booster, best = chosen
    selection = {"num_leaves": leaves, "valid_logloss": losses, "rounds": rounds}
    if refit_with_valid:
        refit_on = (np.vstack([X_train, X_valid]), np.concatenate([y_train, y_valid]))
    if refit_on is not None:
        X_refit, y_refit = refit_on
        refit_rounds = min(cfg.max_trees, max(1, round(best * len(y_refit) / len(y_train))))
        both = lgb.Dataset(X_refit, label=y_refit, feature_name=names,
                           categorical_feature=list(categorical), init_score=init.get("refit"))
        selection["refit"] = {"rows": int(len(y_refit)), "trees": int(refit_rounds)}
        return lgb.train(lgb_params(cfg, monotone, leaves), both,
                         num_boost_round=refit_rounds), selection
    # Re-load only the kept trees so the saved model (and serving's SHAP cost) holds no dead trees.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), selection


def fit_calibrator(raw_logit: np.ndarray, y: np.ndarray, min_positives: int) -> Calibrator:
    """Isotonic with enough positives (it needs many to be stable), else Platt scaling."""
    raw_logit = np.asarray(raw_logit, dtype=float)
    y = np.asarray(y, dtype=float)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        # One class only: nothing to learn a mapping from; predict the observed rate.
        return Calibrator("sigmoid", a=0.0, b=base_logit(y))
    if positives >= min_positives:
        raw_p = 1.0 / (1.0 + np.exp(-raw_logit))
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw_p, y)
        return Calibrator("isotonic", x=tuple(map(float, iso.X_thresholds_)),
                          y=tuple(map(float, iso.y_thresholds_)))
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(raw_logit.reshape(-1, 1), y)
    return Calibrator("sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def recalibration_check(earlier_logit: np.ndarray, earlier_y: np.ndarray,
                        later_logit: np.ndarray, later_y: np.ndarray, min_positives: int
                        ) -> dict[str, float | bool]:
    """Does a recalibration learnt on one held-out window improve the next one?

    A calibration window of a few as-of dates holds few events, and its event rate moves from window
    to window with the outcomes' own noise; a calibrator fitted there moves every prediction with
    it. The booster's own probabilities (fitted with log loss on every training date) can be closer
    to the next window's event rate than recalibrated ones, as on the demo world: the recalibration
    then chases noise. So the calibrator fitted on the earlier window is applied to the later one,
    as it would be in use; only if it lowers the later window's Brier score below the booster's own
    does recalibration count as learnt rather than noise. (Brier, not log loss: isotonic's lowest
    block is often exactly 0, and one event there would decide a log-loss comparison alone.)
    """
    earlier = fit_calibrator(earlier_logit, earlier_y, min_positives)
    later_y = np.asarray(later_y, dtype=float)
    recalibrated = float(np.mean((earlier.apply(later_logit) - later_y) ** 2))
    booster = float(np.mean((Calibrator("identity").apply(later_logit) - later_y) ** 2))
    return {"brier_recalibrated": recalibrated, "brier_booster": booster,
            "recalibrate": recalibrated < booster}


def fit_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    calib: pd.DataFrame,
    features: Sequence[str],
    label: str,
    cfg: TrainingConfig,
    feature_set_version: str,
    metadata: dict[str, Any] | None = None,
    refit_with_valid: bool = False,
    encoded: tuple[dict[str, list[str]], dict[str, np.ndarray]] | None = None,
    refit_rows: pd.DataFrame | None = None,
    start_C: float | None = None,
    start_line: LinearModel | None = None,
) -> Bundle:
    """Fit, early-stop and calibrate one model of `label`; every frame has no NaN labels.

    With `cfg.lightgbm_start` logistic, the boosting starts from a logistic regression fitted
    on the same rows as the trees (`training.selection.linear_start`, C `start_C`, else
    `logistic_c_default`), and the model is the two together (`scoring.boosted`).
    `start_line`: that regression on `train` already fitted (by a parameter search, with the
    `encoded` levels), not fitted again.

    `encoded`: the training frame's `category_levels` and the matrices of some of the windows
    (`train`, `valid`, `calib`) already encoded with them (by a parameter search before the
    fit); those windows are not encoded again. `refit_rows`: more rows than `train` to refit
    the early-stopped candidate on before it is calibrated (`fit_booster`'s `refit_on`; a time
    split's `refit_rows`)."""
    for name, part in (("training", train), ("validation", valid), ("calibration", calib)):
        if part.empty:
            raise ValueError(f"{label}: the {name} window has no labelled rows")
        if part[label].isna().any():
            raise ValueError(f"{label}: the {name} window has censored (NaN) labels; drop them")
    features = list(features)
    categories, done = encoded if encoded is not None else (
        category_levels(train, features), {})
    enc = {k: done[k] if k in done else encode_frame(v, features, categories, what=label)
           for k, v in (("train", train), ("valid", valid), ("calib", calib))}
    refit_on = None
    if refit_rows is not None and len(refit_rows) > len(train):
        refit_on = (encode_frame(refit_rows, features, categories, what=label),
                    refit_rows[label].to_numpy(float))
    saw_valid = refit_with_valid or (refit_rows is not None and refit_on is not None
                                     and bool(refit_rows.index.isin(valid.index).any()))
    y_train, y_valid = train[label].to_numpy(float), valid[label].to_numpy(float)
    monotone = monotone_constraints(features, label, cfg)
    init: dict[str, np.ndarray] | None = None
    start: LinearModel | None = None
    if cfg.lightgbm_start == "logistic":
        C = float(start_C if start_C is not None else cfg.logistic_c_default)
        if refit_with_valid:  # the refit's line must see the rows its trees see
            refit_on = (np.vstack([enc["train"], enc["valid"]]), np.concatenate([y_train, y_valid]))
            refit_with_valid = False
        start = start_line if start_line is not None else linear_start(
            enc["train"], y_train, features, list(categories), C, cfg.seed, monotone)
        init = {"train": start.predict(enc["train"], raw_score=True),
                "valid": start.predict(enc["valid"], raw_score=True)}
        if refit_on is not None:
            start = linear_start(refit_on[0], refit_on[1], features, list(categories), C,
                                 cfg.seed, monotone)
            init["refit"] = start.predict(refit_on[0], raw_score=True)
    trees, selection = fit_booster(
        enc["train"], y_train, enc["valid"], y_valid, features, list(categories), cfg,
        refit_with_valid, monotone, refit_on, init)
    booster: lgb.Booster | BoostedModel = trees
    if start is not None:
        booster = BoostedModel(start, trees)
        selection["start"] = {"kind": "logistic", "C": start.C}
    raw_calib = np.asarray(booster.predict(enc["calib"], raw_score=True), dtype=float)
    y_calib = calib[label].to_numpy(float)
    check: dict[str, float | bool] | None = None
    if not saw_valid:  # refitted, the early-stopping rows are in the trees: no check
        check = recalibration_check(np.asarray(booster.predict(enc["valid"], raw_score=True),
                                               dtype=float),
                                    valid[label].to_numpy(float), raw_calib, y_calib,
                                    cfg.isotonic_min_positives)
    calibrator = fit_calibrator(raw_calib, y_calib, cfg.isotonic_min_positives) \
        if check is None or check["recalibrate"] else Calibrator("identity")
    meta = {
        "trees": int(booster.num_trees()),
        "params": model_params(cfg),
        "selection": selection,
        "rows": {"train": len(train), "valid": len(valid), "calib": len(calib)},
        "calibration": {"method": calibrator.method,
                        "positives": int(calib[label].sum()), "rows": len(calib),
                        **({"check": check} if check is not None else {})},
        **(metadata or {}),
    }
    log.info("%s: %d trees of %d leaves, %s calibration on %d positives", label, meta["trees"],
             selection["num_leaves"], calibrator.method, meta["calibration"]["positives"])
    return Bundle(booster=booster, label=label, features=tuple(features), categories=categories,
                  feature_set_version=feature_set_version, calibrator=calibrator, metadata=meta)


def refit_choice(selections: Sequence[dict[str, Any]], max_trees: int) -> dict[str, Any]:
    """Leaves and tree count of a refit from the backtest folds' early stopping (latest first).

    Leaves: the count most folds chose (the latest fold's on a tie). Trees: the median best
    round of that count across the folds, not scaled up for the refit's larger data: each
    fold's early stopping measured how many trees a few months of rows support, and a linear
    scaling (right for a refit on one more fold of exchangeable rows) is a guess when the refit
    has several times the rows; a few trees short at a 0.05 learning rate cost little, too many
    overfit the newest months nothing has judged.
    """
    chosen = [int(s["num_leaves"]) for s in selections]
    leaves = most_chosen(chosen)
    rounds = [int(s["rounds"][str(leaves)]) for s in selections]
    trees = int(min(max_trees, max(1, round(float(np.median(rounds))))))
    return {"num_leaves": leaves, "trees": trees, "rule": "median best round of the folds",
            "num_leaves_by_fold": chosen, "rounds_by_fold": rounds}


def out_of_fold_calibrator(parts: Sequence[tuple[np.ndarray, np.ndarray]],
                           fold_calibrations: Sequence[str], min_positives: int
                           ) -> tuple[Calibrator, dict[str, Any]]:
    """The calibrator of a refit model, from the backtest folds' out-of-fold predictions.

    `parts`: per fold (latest first), the fold model's raw logits on its test rows and their
    labels: predictions of models that never saw those rows, like the refit model's on the
    months to come (the scheme of scikit-learn's `CalibratedClassifierCV(ensemble=False)`).
    Whether to recalibrate at all is `recalibration_check`'s question asked out of time: a
    calibrator fitted on the earlier folds must improve the latest fold. With one fold, the
    fold model's own decision stands (`fold_calibrations`: each fold's calibrator method).
    """
    raw = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(float)
    check: dict[str, float | bool] | None = None
    if len(parts) >= 2:
        earlier_raw = np.concatenate([p[0] for p in parts[1:]])
        earlier_y = np.concatenate([p[1] for p in parts[1:]])
        check = recalibration_check(earlier_raw, earlier_y, parts[0][0], parts[0][1],
                                    min_positives)
        recalibrate = bool(check["recalibrate"])
    else:
        recalibrate = fold_calibrations[0] != "identity"
    calibrator = fit_calibrator(raw, y, min_positives) if recalibrate else Calibrator("identity")
    info: dict[str, Any] = {"method": calibrator.method, "fitted_on": "out-of-fold",
                            "folds": len(parts), "rows": int(len(y)),
                            "positives": int(y.sum())}
    if check is not None:
        info["check"] = check
    return calibrator, info


def refit_model(
    rows: pd.DataFrame,
    features: Sequence[str],
    label: str,
    cfg: TrainingConfig,
    feature_set_version: str,
    choice: dict[str, Any],
    calibrator: Calibrator,
    metadata: dict[str, Any] | None = None,
    start_C: float | None = None,
) -> Bundle:
    """One booster on every labelled row of `label`, `choice["trees"]` trees of
    `choice["num_leaves"]` leaves (no early stopping: nothing is left to stop on), with a
    calibrator fitted elsewhere (`out_of_fold_calibrator`); with `cfg.lightgbm_start`
    logistic, boosted from a logistic regression on the same rows (C `start_C`)."""
    if rows.empty or rows[label].isna().any():
        raise ValueError(f"{label}: a refit needs labelled rows only, and at least one")
    features = list(features)
    categories = category_levels(rows, features)
    X = encode_frame(rows, features, categories, what=label)
    y = rows[label].to_numpy(float)
    monotone = monotone_constraints(features, label, cfg)
    start = None
    if cfg.lightgbm_start == "logistic":
        start = linear_start(X, y, features, list(categories),
                             float(start_C if start_C is not None else cfg.logistic_c_default),
                             cfg.seed, monotone)
    data = lgb.Dataset(X, label=y, feature_name=features, categorical_feature=list(categories),
                       init_score=None if start is None else start.predict(X, raw_score=True))
    trees = lgb.train(lgb_params(cfg, monotone, int(choice["num_leaves"])), data,
                      num_boost_round=int(choice["trees"]))
    booster: lgb.Booster | BoostedModel = trees if start is None else BoostedModel(start, trees)
    as_of = pd.to_datetime(rows["as_of"]) if "as_of" in rows else None
    trained_on: dict[str, Any] = {"rows": len(rows), "positives": int(rows[label].sum())}
    if as_of is not None:
        trained_on |= {"first_as_of": as_of.min().date().isoformat(),
                       "last_as_of": as_of.max().date().isoformat(),
                       "as_of_dates": int(as_of.nunique())}
    meta = {
        "trees": int(booster.num_trees()),
        "params": model_params(cfg),
        "selection": {"num_leaves": int(choice["num_leaves"]), "refit": choice,
                      **({"start": {"kind": "logistic", "C": start.C}} if start else {})},
        "trained_on": trained_on,
        "rows": {"train": len(rows)},
        **(metadata or {}),
    }
    log.info("%s: refit on %d rows (%s .. %s): %d trees of %d leaves, %s calibration", label,
             len(rows), trained_on.get("first_as_of"), trained_on.get("last_as_of"),
             meta["trees"], choice["num_leaves"], calibrator.method)
    return Bundle(booster=booster, label=label, features=tuple(features), categories=categories,
                  feature_set_version=feature_set_version, calibrator=calibrator, metadata=meta)
