"""Choosing each target's champion among LightGBM, logistic regression and the rules score.

The three candidates of a (target, horizon) are judged on the same backtest folds by one metric,
`pooled_auc`: every fold's out-of-fold test predictions pooled, one ROC AUC over them, with a
bootstrap 95% interval (`training.bootstrap_resamples` paired resamples, seeded:
`training.evaluate.bootstrap_aucs`, the table mode's scheme). Pooling rather than averaging fold
AUCs: one ranking over more events, and the same rows for every candidate. The champion is the
candidate with the highest pooled AUC; an exact tie goes to the simpler one (the rules score,
then logistic regression), so a model its own baseline matches is never the champion. Whatever
wins is what is refit, registered and served (`scoring.bundle`: all three kinds are servable),
and when LightGBM is not the winner the report and the registry say so in a sentence
(`beaten_note`).

Here also the fitting of the two candidates that are not LightGBM, in their servable form: the
logistic regression as `scoring.linear.LinearModel` (fitted by sklearn on that model's own
standardised design, C chosen among `training.logistic_c` by log loss on the fold's early-
stopping window) and the rules score as `scoring.rules_model.RulesScoreModel` (its score through
a fitted logistic line). The backtest scores the logistic candidate with the very numbers
serving would use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from scoring.bundle import Bundle, Calibrator, category_levels, encode_frame
from scoring.health.profiles import Rules
from scoring.linear import VALUE, LinearModel
from scoring.rules_model import RulesScoreModel
from training import evaluate
from training.settings import TrainingConfig

log = logging.getLogger(__name__)

CANDIDATES = ("model", "logistic", "rules")
"""Keys of the candidates in the report (`model` is LightGBM, as in every report before)."""
NAMES = {"model": "LightGBM", "logistic": "logistic regression", "rules": "the rules score"}
KINDS = {"model": "lightgbm", "logistic": "logistic", "rules": "rules"}
SIMPLER_FIRST = ("rules", "logistic", "model")
"""Who wins an exact tie of pooled AUC: the simpler candidate."""
BASIS = "pooled out-of-fold ROC AUC of the backtest"
T = TypeVar("T")


def base_logit(y: np.ndarray) -> float:
    """The log-odds of the rows' event rate (kept off 0 and 1): what a model that knows nothing
    but the labels predicts."""
    rate = float(np.clip(np.asarray(y, float).mean(), 1e-6, 1 - 1e-6))
    return float(np.log(rate / (1 - rate)))


def most_chosen(values: Sequence[T]) -> T:
    """The value most entries hold; on a tie the first listed (folds are listed latest first)."""
    return max(dict.fromkeys(values), key=list(values).count)


# --- the one metric ---------------------------------------------------------------------------

def pooled_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of one scorer over the pooled out-of-fold rows: the AUC every report, registry
    tag and champion choice of the warehouse models states. None with one class only."""
    return evaluate.roc_auc(y, score)


def auc_intervals(y: np.ndarray, scores: Mapping[str, np.ndarray], seed: int, resamples: int,
                  groups: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """`pooled_auc` of each scorer with its bootstrap 95% interval (the same resamples for
    every scorer, so their differences are paired; `groups`: the rows' accounts, drawn whole,
    `evaluate.bootstrap_aucs`)."""
    y = np.asarray(y, float)
    scores = {k: np.asarray(v, float) for k, v in scores.items()}
    boot = evaluate.bootstrap_aucs(y, scores, seed, resamples, groups) if resamples > 0 else {}
    out = {}
    for k, s in scores.items():
        value = pooled_auc(y, s)
        ci = [float(v) for v in np.nanpercentile(boot[k], [2.5, 97.5])] \
            if k in boot and value is not None and np.isfinite(boot[k]).any() else None
        out[k] = {"value": value, "ci95": ci, "_boot": boot.get(k)}
    return out


def choose_champion(y: np.ndarray, preds: Mapping[str, np.ndarray | None], seed: int,
                    resamples: int, groups: np.ndarray | None = None) -> dict[str, Any]:
    """The candidate with the highest `pooled_auc`, each candidate's AUC with its interval and
    the champion's lead over each other one (with the paired interval of the lead). `groups`:
    each row's account, so the intervals draw accounts, not rows."""
    scores = {k: np.asarray(v, float) for k, v in preds.items()
              if k in CANDIDATES and v is not None}
    aucs = auc_intervals(y, scores, seed, resamples, groups)
    rank = {k: (-1.0 if a["value"] is None else a["value"]) for k, a in aucs.items()}
    champion = max(rank, key=lambda k: (rank[k], -SIMPLER_FIRST.index(k)))

    def lead(k: str) -> dict[str, Any]:
        a, b = aucs[champion], aucs[k]
        value = None if a["value"] is None or b["value"] is None else a["value"] - b["value"]
        ci = None
        if a["_boot"] is not None and b["_boot"] is not None and value is not None:
            ci = [float(v) for v in np.nanpercentile(a["_boot"] - b["_boot"], [2.5, 97.5])]
        return {"value": value, "ci95": ci}

    return {"scorer": champion, "kind": KINDS[champion], "basis": BASIS,
            "bootstrap_resamples": resamples, "rows": int(len(y)),
            "positives": int(np.asarray(y, float).sum()),
            "roc_auc": {k: {"value": a["value"], "ci95": a["ci95"]} for k, a in aucs.items()},
            "lead": {k: lead(k) for k in aucs if k != champion}}


def shown_auc(choice: Mapping[str, Any], k: str) -> str:
    a = choice["roc_auc"][k]
    if a["value"] is None:
        return "undefined"
    ci = a.get("ci95")
    return f"{a['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def beaten_note(label: str, choice: Mapping[str, Any]) -> str | None:
    """The sentence of the report and the registry when LightGBM is not the champion."""
    win = choice["scorer"]
    if win == "model" or "model" not in choice["roc_auc"]:
        return None
    lead = choice["lead"]["model"]
    ci = lead.get("ci95")
    lead_text = "" if lead["value"] is None else f", lead {lead['value']:+.3f}" + (
        f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
    verb = "matches" if lead["value"] == 0 else "beats"
    return (f"{label}: {NAMES[win]} {verb} LightGBM on the same backtest folds ({BASIS}: "
            f"{shown_auc(choice, win)} vs {shown_auc(choice, 'model')}{lead_text}): "
            f"{NAMES[win]} is what is registered and served, not LightGBM")


# --- the logistic-regression candidate ---------------------------------------------------------

def _fit_linear(layout: LinearModel, X: np.ndarray, y: np.ndarray, C: float, seed: int
                ) -> LinearModel:
    z = layout.design(X)
    if len(layout.columns) == 0 or not 0 < y.sum() < len(y):
        return layout.with_coefficients(np.zeros(len(layout.columns)), base_logit(y), C)
    lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(z, y.astype(int))
    return layout.with_coefficients(lr.coef_[0], float(lr.intercept_[0]), C)


def fit_logistic(train: pd.DataFrame, valid: pd.DataFrame | None, features: Sequence[str],
                 label: str, cfg: TrainingConfig, feature_set_version: str,
                 C: float | None = None, metadata: dict[str, Any] | None = None,
                 refit_rows: pd.DataFrame | None = None) -> Bundle:
    """The logistic candidate as a servable bundle: fitted on `train`, C chosen among
    `cfg.logistic_c` by log loss on `valid` (the fold's early-stopping window, after the
    training dates), or the given `C` (a refit). `refit_rows`: once C is chosen, the model is
    fitted on these instead (a fold's `TimeSplit.refit` rows, as its LightGBM candidate). Its
    calibrator is the identity: a refit gets the out-of-fold one."""
    features = list(features)
    categories = category_levels(train, features)
    X = encode_frame(train, features, categories, what=label)
    y = train[label].to_numpy(float)
    layout = LinearModel.layout(X, features, list(categories))
    losses: dict[str, float] = {}
    if C is None:
        assert valid is not None
        Xv, yv = encode_frame(valid, features, categories, what=label), valid[label].to_numpy(float)
        best: tuple[float, float] | None = None
        for c in cfg.logistic_c:
            m = _fit_linear(layout, X, y, c, cfg.seed)
            p = np.clip(m.predict(Xv), 1e-12, 1 - 1e-12)
            loss = float(log_loss(yv, p, labels=[0, 1]))
            losses[str(c)] = loss
            if best is None or loss < best[0]:
                best = (loss, c)
        assert best is not None
        C = best[1]
    if refit_rows is not None:
        train = refit_rows
        categories = category_levels(train, features)
        X = encode_frame(train, features, categories, what=label)
        y = train[label].to_numpy(float)
        layout = LinearModel.layout(X, features, list(categories))
    model = _fit_linear(layout, X, y, float(C), cfg.seed)
    trained_on = _trained_on(train, label)
    return Bundle(booster=model, label=label, features=tuple(features), categories=categories,
                  feature_set_version=feature_set_version, calibrator=Calibrator("identity"),
                  metadata={"kind": "logistic", "trees": 0,
                            "selection": {"C": float(C), "valid_logloss": losses},
                            "trained_on": trained_on, **(metadata or {})})


def linear_start(X: np.ndarray, y: np.ndarray, features: Sequence[str],
                 categorical: Sequence[str], C: float, seed: int,
                 monotone: Sequence[int] | None = None) -> LinearModel:
    """The logistic regression a LightGBM candidate boosts from (`lightgbm_start` logistic):
    fitted on the same model matrix as its trees, with the logistic candidate's C.

    `monotone` (LightGBM's constraints, one per feature): each constrained feature's
    coefficient is bounded to the constraint's sign (L-BFGS-B on sklearn's objective), so the
    line, like the trees, never moves risk against the registry's direction; the trees then
    cannot undo it, and the sum is monotone too."""
    layout = LinearModel.layout(X, features, categorical)
    if not monotone or not any(monotone) or len(layout.columns) == 0 or not 0 < y.sum() < len(y):
        return _fit_linear(layout, X, y, C, seed)
    z = layout.design(X)
    y = np.asarray(y, float)
    sign = {1: (0.0, None), -1: (None, 0.0)}
    bounds = [sign.get(int(monotone[c.feature]), (None, None)) if c.kind == VALUE
              else (None, None) for c in layout.columns] + [(None, None)]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        margin = z @ w + b
        residual = 1.0 / (1.0 + np.exp(-margin)) - y
        loss = C * float(np.sum(np.logaddexp(0.0, margin) - y * margin)) + 0.5 * float(w @ w)
        return loss, np.append(C * (z.T @ residual) + w, C * residual.sum())

    theta0 = np.append(np.zeros(z.shape[1]), base_logit(y))
    fit = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 2000})
    return layout.with_coefficients(fit.x[:-1], float(fit.x[-1]), C)


def refit_C(fold_bundles: Sequence[Bundle]) -> float:
    """The C most folds chose (the latest fold's on a tie)."""
    return most_chosen([float(b.metadata["selection"]["C"]) for b in fold_bundles])


# --- the rules-score candidate -----------------------------------------------------------------

def fit_rules_model(rows: pd.DataFrame, score: pd.Series, features: Sequence[str], label: str,
                    rules: Rules, connected: frozenset[str], feature_set_version: str,
                    metadata: dict[str, Any] | None = None) -> Bundle:
    """The rules score as a servable bundle: `sigmoid(a * score + b)` fitted on the labelled
    `rows` (a missing score counts as the median)."""
    features = list(features)
    s = np.asarray(score, float)
    fill = float(np.nanmedian(s)) if np.isfinite(s).any() else 50.0
    s = np.where(np.isnan(s), fill, s)
    y = rows[label].to_numpy(float)
    if 0 < y.sum() < len(y):
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(s.reshape(-1, 1), y.astype(int))
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    else:
        a, b = 0.0, base_logit(y)
    categories = category_levels(rows, features)
    model = RulesScoreModel.for_rules(rules, features, categories, connected, a, b, fill)
    return Bundle(booster=model, label=label, features=tuple(features), categories=categories,
                  feature_set_version=feature_set_version, calibrator=Calibrator("identity"),
                  metadata={"kind": "rules", "trees": 0,
                            "selection": {"a": a, "b": b, "fill": fill,
                                          "rules_config_version": rules.config_version},
                            "calibration": {"method": "logistic on the rules score",
                                            "fitted_on": "every labelled row",
                                            "rows": int(len(y)), "positives": int(y.sum())},
                            "trained_on": _trained_on(rows, label), **(metadata or {})})


def _trained_on(rows: pd.DataFrame, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": int(len(rows)), "positives": int(rows[label].sum())}
    if "as_of" in rows and len(rows):
        as_of = pd.to_datetime(rows["as_of"])
        out |= {"first_as_of": as_of.min().date().isoformat(),
                "last_as_of": as_of.max().date().isoformat(),
                "as_of_dates": int(as_of.nunique())}
    return out
