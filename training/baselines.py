"""The baselines a model must beat, scored on the same held-out rows as the model.

- `rules`: the rules composite (`scoring.health.score_frame`): 0-100, higher is healthier, so the
  churn ranking is `100 - score` and the expansion ranking is `score`. It ranks but gives no
  probabilities, so only ranking metrics apply to it. Pluggable: without `scoring.health` (or
  when it fails) the baseline is absent and reports say so.
- `logistic`: sklearn logistic regression on the same features, median-imputed (with missing
  indicators) and standardised, categories one-hot; fitted on the model's own training rows
  (the early-stopping and calibration windows stay out of it, as they stay out of the trees).
- `oracle`: on synthetic data, the generator's probability given the state as the data shows
  it (`features.synth.generate.oracle_probability` with `training.oracle.estimate_state`):
  the ceiling a model of the data should not pass on average.

Nothing here decides dates or writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

log = logging.getLogger(__name__)


def _is_categorical(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col)


def fit_logistic(frame: pd.DataFrame, features: Sequence[str], label: str, seed: int,
                 C: float = 1.0) -> Pipeline:
    """Standardised, imputed logistic regression on the features (the linear baseline);
    `C` is sklearn's inverse L2 strength."""
    cats = [f for f in features if _is_categorical(frame[f])]
    nums = [f for f in features if f not in cats]
    # Features that are entirely missing in training carry nothing and break the imputer.
    nums = [f for f in nums if frame[f].notna().any()]
    cats = [f for f in cats if frame[f].notna().any()]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                              StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                              OneHotEncoder(handle_unknown="ignore", min_frequency=20)), cats),
    ])
    model = Pipeline([("pre", pre),
                      ("lr", LogisticRegression(C=C, max_iter=2000, random_state=seed))])
    model.fit(_as_sklearn_frame(frame, nums, cats), frame[label].to_numpy(int))
    model.feature_names_ = (nums, cats)  # type: ignore[attr-defined]
    return model


def predict_logistic(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    nums, cats = model.feature_names_  # type: ignore[attr-defined]
    return np.asarray(model.predict_proba(_as_sklearn_frame(frame, nums, cats))[:, 1], dtype=float)


def _as_sklearn_frame(frame: pd.DataFrame, nums: list[str], cats: list[str]) -> pd.DataFrame:
    out = frame[nums].astype(float)
    for c in cats:
        out[c] = frame[c].astype(object).where(frame[c].notna(), np.nan).astype(str) \
            .where(frame[c].notna(), "(missing)")
    return out


def rules_scores(features: pd.DataFrame, connected: frozenset[str]) -> pd.Series | None:
    """The rules composite score (0-100) for every row, or None when it is unavailable."""
    try:
        from scoring.health import load_rules, score_frame
    except ImportError as exc:
        log.warning("rules baseline unavailable (scoring.health not importable: %s)", exc)
        return None
    try:
        scored = score_frame(features, connected, load_rules())
    except Exception as exc:  # the baseline is optional: a failure must not stop training
        log.warning("rules baseline failed, reported as absent: %s", exc)
        return None
    return pd.Series(scored["score"].to_numpy(dtype=float), index=features.index, name="score")


def rules_ranking(score: pd.Series | np.ndarray, target: str) -> np.ndarray:
    """Higher = more likely event: churn ranks unhealthy first, expansion healthy first."""
    s = np.asarray(score, dtype=float)
    return 100.0 - s if target == "churn" else s


def oracle_probabilities(
    truth: pd.DataFrame | None, entities: pd.DataFrame, horizon: int, target: str,
    state: pd.DataFrame | None = None,
) -> np.ndarray | None:
    """The generator's probability of the event for each entity row, from the state the data
    shows (`state`: `training.oracle.estimate_state` of these rows; without it the latent
    state), or None without truth."""
    if truth is None:
        return None
    try:
        from features.synth.generate import oracle_probability
    except ImportError as exc:
        log.warning("oracle baseline unavailable: %s", exc)
        return None
    ents = entities[["account_id", "as_of"]].reset_index(drop=True)
    if target not in ("churn", "expansion"):
        return None
    estimate = None if state is None else state.loc[entities.index].reset_index(drop=True)
    p = oracle_probability(truth, ents, horizon, target=target,  # type: ignore[arg-type]
                           state_estimate=estimate)
    return np.asarray(p, dtype=float)
