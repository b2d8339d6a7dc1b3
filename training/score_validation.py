"""validate-score's measurement: how well the rules score ranks churn on historical as-of dates.

Owns the evaluation of the rules-based health score against outcomes: on monthly as-of dates it
scores every active account with the one scoring pipeline (`scoring.pipeline.score_accounts`, as the
daily job and the service do), joins churn labels from `training.labels.build_labels`, and reports
ROC AUC of the composite and each dimension for churn within each horizon (a lower score should mean
a higher risk), top-decile lift, the churn rate per band, and suggested dimension weights fitted to
outcomes (logistic regression on the negated dimension scores with non-negative coefficients,
missing dimensions imputed by the composite) with their AUC gain over the current weights on a later
window. Only dimensions with data are weighed: one whose features are missing in every scored row
(its source tables not connected, or never filled) gets no suggested weight, and the result says
which were left out and why. It never changes the rules file: the weights are a suggestion for a
person.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score

from features.registry import DIMENSION_SOURCES
from scoring.health.composite import score_composite
from scoring.health.profiles import REGISTRY_DIMENSION, SCORED_DIMENSIONS, Rules

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
ACTIVITY_TABLES = ("usage_events", "tickets", "touchpoints", "surveys", "invoices")


@dataclass
class SuggestedWeights:
    horizon: int
    weights: dict[str, float]
    current: dict[str, float]
    fit_dates: list[str]
    eval_dates: list[str]
    eval_rows: int
    auc_current: float
    auc_suggested: float
    left_out: dict[str, str] = field(default_factory=dict)
    """Dimensions given no weight because they have no data, with the reason."""

    @property
    def gain(self) -> float:
        return self.auc_suggested - self.auc_current


@dataclass
class ScoreValidation:
    dates: list[str]
    rows: int
    horizons: list[int]
    config_version: str
    auc: dict[str, dict[int, float]]
    """{"composite" or dimension: {horizon: ROC AUC}} (NaN when not computable)."""
    coverage: dict[str, float]
    """Share of scored rows where each dimension had data."""
    churn_rate: dict[int, float]
    lift: dict[int, float]
    """Top-decile lift: churn rate among the 10% lowest composite scores over the base rate."""
    bands: list[dict[str, Any]] = field(default_factory=list)
    """Per band: rows and churn rate within each horizon."""
    suggested: SuggestedWeights | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    """Dimensions without data in any scored row, left out of the suggested weights: why."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["auc"] = {k: {str(h): _clean(v) for h, v in d.items()} for k, d in self.auc.items()}
        out["churn_rate"] = {str(h): _clean(v) for h, v in self.churn_rate.items()}
        out["lift"] = {str(h): _clean(v) for h, v in self.lift.items()}
        out["coverage"] = {k: _clean(v) for k, v in self.coverage.items()}
        out["bands"] = [{k: _clean(v) for k, v in b.items()} for b in self.bands]
        if self.suggested is not None:
            out["suggested"]["gain"] = _clean(self.suggested.gain)
            out["suggested"]["auc_current"] = _clean(self.suggested.auc_current)
            out["suggested"]["auc_suggested"] = _clean(self.suggested.auc_suggested)
        return out


def _clean(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if np.isnan(v) else round(float(v), 6)
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    return v


def auc_lower_is_riskier(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of churn ranked by a health score (low score = high risk); NaN when undefined."""
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    keep = ~np.isnan(y) & ~np.isnan(s)
    y, s = y[keep], s[keep]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, -s))


def top_decile_lift(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    keep = ~np.isnan(y) & ~np.isnan(s)
    y, s = y[keep], s[keep]
    if not len(y) or y.mean() == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * len(y))))
    # Stable sort on the score with a seeded tie-break: ties do not depend on the row order.
    order = np.lexsort((np.random.default_rng(0).random(len(s)), s))
    return float(y[order[:k]].mean() / y.mean())


def evaluate_scores(
    scored: pd.DataFrame, labels: pd.DataFrame, horizons: Sequence[int]
) -> dict[str, Any]:
    """The metrics of scored rows against their labels (same rows, same order)."""
    auc: dict[str, dict[int, float]] = {"composite": {}}
    for dim in SCORED_DIMENSIONS:
        auc[dim] = {}
    churn_rate, lift = {}, {}
    for h in horizons:
        y = labels[f"churn_{h}d"].to_numpy(dtype=float)
        auc["composite"][h] = auc_lower_is_riskier(y, scored["score"].to_numpy())
        for dim in SCORED_DIMENSIONS:
            auc[dim][h] = auc_lower_is_riskier(y, scored[f"dim_{dim}"].to_numpy())
        known = ~np.isnan(y)
        churn_rate[h] = float(np.nanmean(y)) if known.any() else float("nan")
        lift[h] = top_decile_lift(y, scored["score"].to_numpy())
    coverage = {dim: float(scored[f"dim_{dim}"].notna().mean()) if len(scored) else float("nan")
                for dim in SCORED_DIMENSIONS}
    bands = []
    for name, group in scored.groupby("band", sort=False, dropna=True):
        lab = labels.loc[group.index]
        entry: dict[str, Any] = {"band": str(name), "rows": int(len(group)),
                                 "mean_score": float(group["score"].mean())}
        for h in horizons:
            y = lab[f"churn_{h}d"].to_numpy(dtype=float)
            entry[f"churn_{h}d"] = float(np.nanmean(y)) if (~np.isnan(y)).any() else float("nan")
            entry[f"labelled_{h}d"] = int((~np.isnan(y)).sum())
        bands.append(entry)
    bands.sort(key=lambda b: -b["mean_score"])
    return {"auc": auc, "churn_rate": churn_rate, "lift": lift, "coverage": coverage,
            "bands": bands}


def dimensions_with_data(scored: pd.DataFrame, connected: frozenset[str] | None = None
                         ) -> tuple[list[str], dict[str, str]]:
    """The scored dimensions that have data in some row, and why each other one was left out
    (weighing a dimension that is missing everywhere would only fit noise)."""
    kept: list[str] = []
    left_out: dict[str, str] = {}
    for dim in SCORED_DIMENSIONS:
        if scored[f"dim_{dim}"].notna().any():
            kept.append(dim)
            continue
        sources = DIMENSION_SOURCES[REGISTRY_DIMENSION[dim]]
        if connected is not None and not any(t in connected for t in sources):
            left_out[dim] = f"no data: {' and '.join(sources)} not connected"
        else:
            left_out[dim] = "no data: its features are missing in every scored row"
    return kept, left_out


def _design(scored: pd.DataFrame, dims_used: Sequence[str] = SCORED_DIMENSIONS) -> np.ndarray:
    """Negated dimension scores on 0-1, missing ones imputed by the row's composite."""
    dims = scored[[f"dim_{d}" for d in dims_used]].to_numpy(dtype=float)
    comp = scored["score"].to_numpy(dtype=float)[:, None]
    filled = np.where(np.isnan(dims), comp, dims)
    return -filled / 100.0


def fit_weights(scored: pd.DataFrame, y: np.ndarray, l2: float = 1e-3,
                dims: Sequence[str] = SCORED_DIMENSIONS) -> dict[str, float]:
    """Non-negative logistic-regression weights of the dimensions `dims` (summing to 100).

    Churn ~ intercept + sum_k c_k * (-dim_k / 100) with c_k >= 0 (scipy L-BFGS-B with bounds), so
    each weight says how much a healthier dimension lowers the odds of churn. All-zero fits fall
    back to equal weights.
    """
    y = np.asarray(y, dtype=float)
    keep = ~np.isnan(y) & scored["score"].notna().to_numpy()
    x = _design(scored, dims)[keep]
    y = y[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("cannot fit weights: the fitting window has only one outcome")
    k = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + x @ theta[1:]
        # log(1 + e^z) - y z, stably; mean over rows plus a small ridge on the coefficients.
        nll = np.mean(np.logaddexp(0.0, z) - y * z) + l2 * np.sum(theta[1:] ** 2)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = np.concatenate([[np.mean(p - y)], x.T @ (p - y) / len(y) + 2 * l2 * theta[1:]])
        return float(nll), grad

    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    start = np.concatenate([[np.log(base / (1 - base))], np.full(k, 0.1)])
    res = minimize(loss, start, jac=True, method="L-BFGS-B",
                   bounds=[(None, None)] + [(0.0, None)] * k)
    coef = np.clip(res.x[1:], 0.0, None)
    if coef.sum() <= 0:
        coef = np.ones(k)
    weights = coef / coef.sum() * 100.0
    return {d: round(float(w), 1) for d, w in zip(dims, weights, strict=True)}


def rescore(scored: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """The composite of already-scored rows with other dimension weights (same renormalisation
    over missing dimensions as the rules score)."""
    dims = scored[[f"dim_{d}" for d in SCORED_DIMENSIONS]].copy()
    dims.columns = list(SCORED_DIMENSIONS)
    score, _ = score_composite(dims, weights)
    return score


def suggest_weights(
    scored: pd.DataFrame, labels: pd.DataFrame, rules: Rules, horizon: int, fit_share: float,
    connected: frozenset[str] | None = None,
) -> SuggestedWeights | None:
    """Fit weights on the earlier as-of dates, compare AUCs on the later ones.

    The fitting dates end `horizon` days before the first evaluation date, so no fitting label
    looks into the evaluation window. Only the dimensions with data are weighed
    (`dimensions_with_data`; `connected` names the connected tables for the reasons).
    """
    dims, left_out = dimensions_with_data(scored, connected)
    if not dims:
        return None
    dates = np.sort(pd.to_datetime(scored["as_of"]).unique())
    if len(dates) < 3:
        return None
    split = int(np.clip(round(len(dates) * fit_share), 1, len(dates) - 1))
    eval_dates = dates[split:]
    fit_dates = dates[dates + np.timedelta64(horizon, "D") <= eval_dates[0]]
    if not len(fit_dates):
        return None
    as_of = pd.to_datetime(scored["as_of"]).to_numpy()
    y = labels[f"churn_{horizon}d"].to_numpy(dtype=float)
    fit = np.isin(as_of, fit_dates)
    ev = np.isin(as_of, eval_dates) & ~np.isnan(y)
    try:
        weights = fit_weights(scored[fit], y[fit], dims=dims)
    except ValueError as exc:
        logger.warning("no suggested weights: %s", exc)
        return None
    # The current weights as they act on this data: a dimension without data gives its weight
    # to the others.
    current = {d: float(w) for d, w in rules.default.weights.items() if d in dims}
    total = sum(current.values()) or 1.0
    held = scored[ev]
    return SuggestedWeights(
        horizon=horizon,
        weights=weights,
        current={d: round(100 * w / total, 1) for d, w in current.items()},
        fit_dates=[str(pd.Timestamp(d).date()) for d in fit_dates],
        eval_dates=[str(pd.Timestamp(d).date()) for d in eval_dates],
        eval_rows=int(ev.sum()),
        # The current composite as scored (segment profiles included) against the suggestion.
        auc_current=auc_lower_is_riskier(y[ev], held["score"].to_numpy()),
        auc_suggested=auc_lower_is_riskier(y[ev], rescore(held, weights)),
        left_out=left_out,
    )


def validation_dates(con: Any, frequency: str = "MS", warmup_days: int = 90,
                     horizon: int = 30, start: Any = None, end: Any = None) -> list[pd.Timestamp]:
    """As-of dates from the first activity plus a warm-up to the last date a `horizon` label is
    observable, at the given pandas frequency (monthly by default)."""
    from features.contract.tables import table
    from features.contract.warehouse import connected_tables
    from training.labels import last_labelled_date

    connected = connected_tables(con)
    if start is None:
        firsts = [con.execute(
            f'select min("{table(t).time_column}") from "{t}"').fetchone()[0]
            for t in ACTIVITY_TABLES if t in connected]
        firsts = [pd.Timestamp(f) for f in firsts if f is not None]
        if not firsts:
            raise ValueError("the warehouse has no activity table with rows: nothing to validate")
        start = min(firsts).normalize() + pd.Timedelta(days=warmup_days)
    if end is None:
        end = last_labelled_date(con, horizon)
    dates = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=frequency)
    return list(dates)


def validate_score(
    con: Any,
    rules: Rules,
    feature_cfg: Any,
    *,
    dates: Sequence[pd.Timestamp],
    horizons: Sequence[int] = (30, 60, 90),
    fit_share: float = 0.6,
    progress: Progress | None = None,
) -> ScoreValidation:
    """Score every active account at each date, label it, and measure."""
    from scoring.pipeline import Scorer, score_accounts
    from training.labels import build_labels

    report = progress or (lambda _s, _d: None)
    if not dates:
        raise ValueError("no as-of dates to validate on")
    scorer = Scorer(rules=rules, features=feature_cfg)
    frames = []
    for i, when in enumerate(dates):
        frames.append(score_accounts(con, None, when, scorer, trend=False))
        report("features", (i + 1) / len(dates))
    feats = pd.concat([f.features for f in frames], ignore_index=True)
    scored = pd.concat([f.scores for f in frames], ignore_index=True)
    report("labels", 0.0)
    # A cursor of its own; build_labels registers its entity rows on a cursor itself, so
    # Ibis switching replacement scans off on a connection it wraps does not reach it.
    labels = build_labels(con.cursor(), feats[["account_id", "as_of"]],
                          horizons=tuple(horizons))
    report("labels", 1.0)
    if not (labels["account_id"].to_numpy() == feats["account_id"].to_numpy()).all():
        raise RuntimeError("labels and features rows are out of step")
    metrics = evaluate_scores(scored, labels, horizons)
    report("weights", 0.0)
    connected = frames[0].connected
    suggested = suggest_weights(scored, labels, rules, max(horizons), fit_share, connected)
    report("weights", 1.0)
    return ScoreValidation(
        left_out=dimensions_with_data(scored, connected)[1],
        dates=[str(pd.Timestamp(d).date()) for d in dates],
        rows=len(scored),
        horizons=list(horizons),
        config_version=rules.config_version,
        suggested=suggested,
        **metrics,
    )
