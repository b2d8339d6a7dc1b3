"""Settings of training: horizons, as-of dates, splits, LightGBM and the promotion gate.

Every field is also a flag of `healthscore train` (`--valid-dates 1`, `--horizons 30,60`,
`--monotone-churn/--no-monotone-churn`): a flag overrides the config file, which overrides the
defaults. Each field's docstring is its flag's help (`use_attribute_docstrings`).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from features.settings import Section


def flag_name(field: str) -> str:
    """The `healthscore train` flag of a training setting: `valid_dates` -> `--valid-dates`."""
    return "--" + field.replace("_", "-")


def setting_name(field: str) -> str:
    """A training setting as an error message names it: the config key and its flag."""
    return f"training.{field} ({flag_name(field)})"


class TrainingConfig(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    horizons: tuple[int, ...] = (30, 60, 90)
    """Prediction horizons in days, ascending (one model per target and horizon). With
    `fit_to_history`, a horizon whose smallest backtest does not fit the history is skipped,
    with a note."""
    seed: int = 42
    """Seed of LightGBM, the logistic baseline and the SHAP sample."""
    as_of_frequency: str = "MS"
    """pandas offset alias for training as-of dates (month start). The time splits are carved
    from these dates: the early-stopping, calibration and test windows hold only them."""
    train_as_of_frequency: str | None = None
    """Extra as-of dates (a pandas offset alias, e.g. W-MON) for the training window only: more
    snapshots of the same accounts to fit on, while the later windows keep `as_of_frequency`'s
    dates. None: training uses the same dates as the other windows."""
    n_folds: int = Field(3, ge=1)
    """Rolling-origin backtest folds wanted (each moves the test window back by `test_dates`).
    With `fit_to_history`, fewer when the history is short, down to 1."""
    fit_to_history: bool = True
    """Fit the backtest to the history at hand: skip horizons whose smallest backtest (1
    early-stopping, 1 calibration and 1 test date, 1 fold, 2 training dates) does not fit, and
    shrink `n_folds`, then `valid_dates`, `calib_dates` and `test_dates` down to that minimum
    (the most folds first, then the largest windows), each change noted in the report. Off:
    the configured horizons and sizes exactly, or an error."""
    promotion_margin: float = 0.005
    """ROC AUC a challenger must gain over the champion to take the alias."""
    as_of_start: date | None = None
    """First training as-of date; None: the start of the data plus the longest feature window."""
    as_of_end: date | None = None
    """Last training as-of date; None: the last date the shortest horizon can still label."""
    targets: tuple[Literal["churn", "expansion"], ...] = ("churn", "expansion")
    """Which outcomes get models (a target without labels in the data is skipped)."""
    # LightGBM: small trees and a tree cap keep per-row SHAP cheap at serving time.
    num_leaves: int | tuple[int, ...] = (4, 8, 16)
    """Leaves per tree: one value, or candidates of which each model keeps the one with the
    lowest log loss on its own early-stopping window (each candidate early-stopped there), so
    the choice never sees the calibration or test rows (`training.model.fit_booster`). The
    default grid is not tuned on any data: 4, doubled twice; 16 bounds the serving SHAP cost
    (linear in leaves)."""
    learning_rate: float = Field(0.05, gt=0)
    """LightGBM shrinkage per tree."""
    max_trees: int = Field(300, ge=1)
    """Tree cap of early stopping (and of the refit's tree count)."""
    min_child_samples: int = Field(40, ge=1)
    """LightGBM `min_child_samples`: rows a leaf needs at least."""
    feature_fraction: float = Field(0.8, gt=0, le=1)
    """Share of features each tree samples."""
    lambda_l2: float = Field(1.0, ge=0)
    """L2 regularisation of the leaf values."""
    early_stopping_rounds: int = Field(30, ge=1)
    """Rounds without a better early-stopping log loss before a fold's booster stops."""
    monotone_churn: bool = True
    """Constrain churn models to the registry's direction: risk never rises with a feature whose
    `higher_is_healthier` is True, nor falls with one where it is False (neutral features free).
    On by default: a CSM never sees a model that calls fewer logins safer."""
    monotone_method: Literal["basic", "intermediate", "advanced"] = "intermediate"
    """LightGBM `monotone_constraints_method` (stricter to looser, cheaper to dearer). LightGBM
    documents `basic` as over-constraining and `intermediate` as much less so. With `basic`, a
    usage-cut account's usage factors often do not lead its explanation; `intermediate` trains
    no slower (bench/RESULTS.md)."""
    search_trials: int = Field(16, ge=0)
    """LightGBM configurations a search starts from (`training.search`: successive halving on
    the early-stopping rows; the configured values are always among them). 0 or 1: no search,
    the configured values. Every LightGBM candidate searches: each backtest fold of the
    warehouse models and the bring-your-own-table mode."""
    fold_refit: bool = True
    """Refit each backtest fold's LightGBM and logistic candidates, once their parameters, tree
    count and C are chosen on the early-stopping window, on every row whose labels close by the
    fold's first calibration date (`TimeSplit.refit`): the training window plus the dates the
    horizon's gap before early stopping held back, the tree count scaled to the rows. With a
    90-day horizon on monthly dates that is three more, and the newest, dates a fold's model
    learns from; the calibration and test windows still see a model that saw none of their
    labels. Off: each fold's models learn from the training window only."""
    lightgbm_start: Literal["constant", "logistic"] = "constant"
    """Where LightGBM's boosting begins: `constant`, the base rate (LightGBM's default), or
    `logistic`, the log-odds of a logistic regression fitted on the same rows with the C the
    logistic candidate chose, the trees then fitting what the line misses. The warehouse
    models' search draws both whenever the logistic candidate is fitted (`training.search`);
    this value is the configured candidates' and a search-free run's."""
    search_seconds: float | None = Field(60.0, gt=0)
    """Wall-time budget of one search, checked before each fit; None: only the trial count
    bounds it. A search cut short by it depends on the machine's speed (the report says so);
    one ended by the trial count is reproducible for a seed."""
    logistic_c: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    """Inverse L2 strengths tried for the logistic-regression candidate. The warehouse models'
    folds (`training.selection`) keep the one with the lowest log loss on the early-stopping
    window; the table mode (`training.table`) keeps the lowest cross-validated log loss on its
    own rows, unless `logistic_c_default` is within `logistic_c_se` standard errors of it."""
    logistic_c_default: float = Field(1.0, gt=0)
    """The C the logistic candidate keeps unless another C's cross-validated log loss beats it
    by more than `logistic_c_se` standard errors: the log losses of neighbouring Cs differ by
    less than their own standard error on most tables, and choosing among them by the bare
    minimum picks noise (bench/RESULTS.md)."""
    logistic_c_se: float = Field(1.0, ge=0)
    """One-standard-error rule for C: the standard errors of the per-row log-loss difference
    by which another C must beat `logistic_c_default`. 0: the lowest log loss."""
    champion_se: float = Field(1.0, ge=0)
    """One-standard-error rule for the table mode's champion: the paired bootstrap standard
    errors of ROC AUC by which a more complex candidate (trees over a line, the blend over
    either) must lead the simplest one before it is chosen. 0: the highest AUC, ties to the
    simpler. Chosen again on each fold's other folds (bench/bench_tables.py), the rule at 1
    held on 4 of the 5 public tables of bench/RESULTS.md and at 0 on 3."""
    bootstrap_resamples: int = Field(1000, ge=0)
    """Paired bootstrap resamples (seeded by `seed`) of the 95% interval of each candidate's
    pooled out-of-fold ROC AUC, and of the champion's lead over the others; 0: no intervals."""
    table_calibration: Literal["sigmoid", "auto"] = "sigmoid"
    """Calibration of the table mode's LightGBM. `sigmoid` (Platt): a strictly increasing map,
    so the ranking the champion is chosen on stays the booster's. `auto`: as the warehouse
    models (isotonic with `isotonic_min_positives`), whose steps tie rows: on the public tables
    of bench/RESULTS.md that cost up to 0.005 ROC AUC."""
    num_threads: int = Field(1, ge=1)
    """Fixed so a seed reproduces the same trees. One thread is also the fastest on a shared
    2-core machine (OpenMP threads spin while the cores are busy: bench/RESULTS.md); raise it
    on a dedicated one."""
    # Chronological windows, in as-of dates, carved from the end of the labelled dates.
    valid_dates: int = Field(2, ge=1)
    """Early-stopping window of each backtest fold, in as-of dates (with `fit_to_history`, at
    most this many, at least 1)."""
    calib_dates: int = Field(2, ge=1)
    """Calibration window of each backtest fold (its own, after the early-stopping one); at
    most this many with `fit_to_history`, at least 1."""
    test_dates: int = Field(2, ge=1)
    """Held-out window of each backtest fold; at most this many with `fit_to_history`, at
    least 1."""
    isotonic_min_positives: int = Field(100, ge=1)
    """Positives the calibration window needs for isotonic calibration; fewer: sigmoid."""
    min_auc: float = 0.55
    """Backtest ROC AUC a model needs before it can be champion at all."""
    cv_folds: int = Field(5, ge=2)
    """Bring-your-own-table mode without a time column: stratified folds."""
    leakage_auc: float = Field(0.98, gt=0.5, le=1)
    """A single feature ranking the label better than this is reported as likely leakage."""
    experiment: str = "healthscore"
    """MLflow experiment name."""
    shap_rows: int = Field(2000, ge=10)
    """Rows sampled from the test window for the SHAP summary plot."""

    @field_validator("horizons")
    @classmethod
    def _horizons_ascending(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or list(v) != sorted(set(v)) or min(v) < 1:
            raise ValueError("training.horizons: distinct ascending days, each >= 1")
        return v

    @field_validator("num_leaves")
    @classmethod
    def _leaf_candidates(cls, v: int | tuple[int, ...]) -> int | tuple[int, ...]:
        values = (v,) if isinstance(v, int) else v
        if not values or min(values) < 2 or len(set(values)) != len(values):
            raise ValueError("training.num_leaves: one value or distinct values, each >= 2")
        return v

    @property
    def leaf_candidates(self) -> tuple[int, ...]:
        """`num_leaves` as candidates (one for a single value)."""
        # A config copied with `model_copy(update=...)` (a champion's logged params, a test's
        # variant) is not validated again: accept an int or any sequence (a JSON list).
        v = self.num_leaves
        return (int(v),) if isinstance(v, int) else tuple(int(x) for x in v)
