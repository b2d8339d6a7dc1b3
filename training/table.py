"""Bring your own table: train, evaluate and register a model on one flat file.

`healthscore train --table FILE --label COL [--id COL] [--time COL] [--drop COL ...]` reads a CSV
or Parquet file with one row per example, a binary label and feature columns (numbers, booleans,
or text that becomes a category). With `--time`, rows are split chronologically (earliest 60%
train, then 10% early stopping, 10% calibration, latest 20% test; rows sharing a time value stay
together); without it, stratified k-fold cross-validation estimates performance out of fold and
a final model is fitted on all rows.

A table nobody here has seen may be better served by a line than by trees, so every fold fits
the candidates on the same rows: LightGBM with its parameters searched on the fold's training
and early-stopping rows (`training.search`) and Platt-calibrated, logistic regression with C
chosen inside the fold, the mean of the two, and (when the table carries the data contract's
features) the rules score. The champion is chosen by pooled out-of-fold ROC AUC (test-window
AUC with `--time`) by the one-standard-error rule: the simplest candidate whose AUC is within
`training.champion_se` bootstrap standard errors of the best (`choose_champion`).
The logistic candidate keeps C=1 unless another C beats it on log loss by more than one standard
error (`within_noise`). Reported with bootstrap 95%
intervals of each AUC and of the champion's lead. The
saved bundle is always the LightGBM (the format serving loads); when another candidate beats
it, the report's warnings and the registry say so, and a winning logistic regression is
registered under its own name (`<name>-logistic`, alias champion).

It owns reading and checking the table, the split schemes and the choice among candidates; it
must not re-implement fitting, metrics or tracking.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from features.registry import FEATURES_BY_NAME
from scoring.bundle import Bundle, category_levels, encode_frame, save_bundle
from training import baselines, evaluate
from training.datasets import Progress
from training.leakage import leakage_suspects
from training.model import fit_model
from training.pipeline import JobResult, build_report
from training.results import ModelResult
from training.search import search_lightgbm
from training.settings import TrainingConfig

if TYPE_CHECKING:  # the composed settings object of the entry point
    from healthscore.settings import Settings

log = logging.getLogger(__name__)

TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "t"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", "f"}
# Share of rows (in time order) in the train / early-stopping / calibration windows; the rest
# is the test window.
TIME_WINDOWS = (0.6, 0.1, 0.1)


class TableError(ValueError):
    """The table cannot be used as given; the message names the file, row and column."""


@dataclass(frozen=True)
class TableSpec:
    path: Path
    label: str
    id: str | None = None
    time: str | None = None
    drop: tuple[str, ...] = ()
    name: str | None = None
    """Registered model name; default `healthscore-table-<label>`."""

    @property
    def model_name(self) -> str:
        return self.name or "healthscore-table-" + re.sub(r"[^A-Za-z0-9]+", "-", self.label)


@dataclass
class PreparedTable:
    frame: pd.DataFrame
    """Features (renamed to LightGBM-safe names), `label` (0/1 float), and `_time` if any."""
    features: list[str]
    renamed: dict[str, str] = field(default_factory=dict)
    """Original column name -> feature name, where they differ."""
    dropped_rows: int = 0

    @property
    def feature_set_version(self) -> str:
        sig = ";".join(f"{c}:{self.frame[c].dtype}" for c in self.features)
        return "table-" + hashlib.sha256(sig.encode()).hexdigest()[:12]


def load_table(path: Path | str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise TableError(f"{path}: expected a .csv or .parquet file")


def _label_values(col: pd.Series, path: Path, name: str) -> np.ndarray:
    """Map a label column to 0/1 floats (NaN stays NaN); any other value is an error."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float).to_numpy()
    text = col.astype(object).where(col.notna(), None).map(
        lambda v: None if v is None else str(v).strip().lower())
    out = np.full(len(col), np.nan)
    out[text.isin(TRUE_VALUES).to_numpy()] = 1.0
    out[text.isin(FALSE_VALUES).to_numpy()] = 0.0
    bad = text.notna().to_numpy() & np.isnan(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"{path}: row {i + 2} (line {i + 2} of a CSV with a header), column {name!r}: "
            f"label value {col.iloc[i]!r} is not binary (expected 0/1, true/false or yes/no); "
            f"{int(bad.sum())} such row(s)")
    return out


def _safe_name(name: str) -> str:
    # LightGBM refuses JSON special characters in feature names.
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "feature"


def prepare_table(raw: pd.DataFrame, spec: TableSpec) -> PreparedTable:
    """Check the columns, encode the label, choose and type the features."""
    path = spec.path
    named = [("--label", spec.label), ("--id", spec.id), ("--time", spec.time),
             *(("--drop", d) for d in spec.drop)]
    for option, col in named:
        if col is not None and col not in raw.columns:
            raise TableError(f"{path}: {option} names column {col!r}, which is not in the "
                             f"table (columns: {', '.join(map(str, raw.columns))})")
    y = _label_values(raw[spec.label], path, spec.label)
    keep = ~np.isnan(y)
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%s: %d row(s) without a label are left out", path, dropped)
    raw = raw.loc[keep].reset_index(drop=True)
    y = y[keep]
    if len(np.unique(y)) < 2:
        raise TableError(f"{path}: column {spec.label!r} has a single class; nothing to learn")
    excluded = {spec.label, spec.id, spec.time, *spec.drop} - {None}
    frame = pd.DataFrame(index=raw.index)
    renamed: dict[str, str] = {}
    for col in raw.columns:
        if col in excluded:
            continue
        values = raw[col]
        name = _safe_name(col)
        if name in frame.columns:
            raise TableError(f"{path}: columns {col!r} and another one both become feature "
                             f"{name!r} once made safe for LightGBM; rename one")
        if name != col:
            renamed[str(col)] = name
        if pd.api.types.is_datetime64_any_dtype(values):
            raise TableError(f"{path}: column {col!r} holds dates; pass it as --time or --drop")
        if pd.api.types.is_bool_dtype(values):
            frame[name] = values.astype(float)
        elif pd.api.types.is_numeric_dtype(values):
            frame[name] = values.astype(float)
        else:
            text = values.astype(object).where(values.notna(), None)
            frame[name] = pd.Categorical(text.map(lambda v: None if v is None else str(v)))
    if frame.empty:
        raise TableError(f"{path}: no feature columns are left after --label/--id/--time/--drop")
    features = list(frame.columns)
    frame["label"] = y
    if spec.time is not None:
        t = raw[spec.time]
        parsed = t if pd.api.types.is_numeric_dtype(t) else pd.to_datetime(t, errors="coerce")
        bad = pd.isna(parsed).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TableError(f"{path}: row {i + 2}, column {spec.time!r}: {t.iloc[i]!r} is not "
                             "a date or a number")
        frame["_time"] = parsed.to_numpy()
    if spec.id is not None:
        frame["_id"] = raw[spec.id].astype(str).to_numpy()
    return PreparedTable(frame, features, renamed, dropped)


def _three_way(idx: np.ndarray, y: np.ndarray, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 split into training, early-stopping and calibration rows."""
    tr, rest = train_test_split(idx, test_size=0.3, stratify=y[idx], random_state=seed)
    va, ca = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return tr, va, ca


PROBABILITIES = ("model", "logistic", "blend")
"""The candidates whose scores are probabilities (the rules score only ranks)."""

Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Row positions of one fold: training, early stopping, calibration, test."""


def cv_folds(y: np.ndarray, cfg: TrainingConfig) -> list[Rows]:
    """The stratified folds of the table mode (each fold's rest split 70/15/15); a bench or a
    notebook comparing other models uses the same rows through this."""
    skf = StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    return [(*_three_way(rest, y, cfg.seed), te) for rest, te in skf.split(np.zeros(len(y)), y)]


def fit_lightgbm(t: PreparedTable, tr: np.ndarray, va: np.ndarray, ca: np.ndarray,
                 cfg: TrainingConfig, label: str, refit: bool) -> Bundle:
    """The LightGBM candidate: parameters searched on the training and early-stopping rows
    (`training.search`), then fitted and calibrated by the warehouse models' own code."""
    f = t.frame
    run_cfg, search = cfg, None
    if cfg.table_calibration == "sigmoid":  # never enough positives for isotonic
        cfg = cfg.model_copy(update={"isotonic_min_positives": len(f) + 1})
        run_cfg = cfg
    if cfg.search_trials > 1:
        cats = category_levels(f.iloc[tr], t.features)
        y = f["label"].to_numpy(float)
        search = search_lightgbm(
            encode_frame(f.iloc[tr], t.features, cats, what=label), y[tr],
            encode_frame(f.iloc[va], t.features, cats, what=label), y[va],
            t.features, list(cats), cfg)
        run_cfg = search.config(cfg)
    bundle = fit_model(f.iloc[tr], f.iloc[va], f.iloc[ca], t.features, "label", run_cfg,
                       t.feature_set_version, metadata={"label": label},
                       refit_with_valid=refit)
    bundle.metadata["search"] = search.summary() if search else None
    return bundle


INNER_FOLDS = 3
"""Folds inside the logistic candidate's own rows for choosing C (exchangeable rows only)."""


def within_noise(losses: dict[Any, np.ndarray], preferred: Sequence[Any], se: float) -> Any:
    """The one-standard-error rule on paired per-row losses (lower is better): the first of
    `preferred` (simplest first) whose mean loss exceeds the best one's by at most `se`
    standard errors of the per-row difference; the best when none does.

    Per-row and paired because the candidates are scored on the same rows: most of a row's loss
    is the row's (how hard it is), and only the difference says whether one candidate is
    better. A difference smaller than its own standard error is what resampling the same rows
    moves around, and departing from the simpler option for it chooses noise (on the public
    tables of bench/RESULTS.md, choosing C by the bare minimum picked C=0.3 or 3 where C=1 was
    better on the held-out rows)."""
    best = min(losses, key=lambda k: (float(np.mean(losses[k])), list(losses).index(k)))
    for k in preferred:
        if k not in losses:
            continue
        diff = np.asarray(losses[k], float) - np.asarray(losses[best], float)
        noise = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if float(np.mean(diff)) <= se * noise:
            return k
    return best


def fit_logistic_tuned(t: PreparedTable, tr: np.ndarray, va: np.ndarray, cfg: TrainingConfig,
                       refit: bool) -> tuple[Pipeline, dict[str, Any]]:
    """The logistic-regression candidate: `logistic_c_default` unless another C of
    `logistic_c` has a lower log loss by more than `logistic_c_se` standard errors
    (`within_noise`).

    Exchangeable rows (`refit`): it learns from training plus early-stopping rows, as the
    refitted trees do, and the log losses are of `INNER_FOLDS`-fold cross-validation inside
    them (one early-stopping window of a small table is too few rows to choose C on). Time
    split: it learns from the training rows and C is chosen on the early-stopping window after
    them.
    """
    f = t.frame
    y = f["label"].to_numpy(int)
    if refit:
        rows = np.concatenate([tr, va])
        inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=cfg.seed)
        splits = [(rows[a], rows[b]) for a, b in inner.split(rows, y[rows])]
    else:
        rows, splits = tr, [(tr, va)]
    row_losses: dict[float, np.ndarray] = {}
    for c in cfg.logistic_c:
        parts = []
        for fit_rows, eval_rows in splits:
            m = baselines.fit_logistic(f.iloc[fit_rows], t.features, "label", cfg.seed, C=c)
            p = np.clip(baselines.predict_logistic(m, f.iloc[eval_rows]), 1e-12, 1 - 1e-12)
            parts.append(-(y[eval_rows] * np.log(p) + (1 - y[eval_rows]) * np.log1p(-p)))
        row_losses[c] = np.concatenate(parts)
    lowest = min(cfg.logistic_c, key=lambda c: (float(np.mean(row_losses[c])), -c))
    best = within_noise(row_losses, [cfg.logistic_c_default, lowest], cfg.logistic_c_se)
    model = baselines.fit_logistic(f.iloc[rows], t.features, "label", cfg.seed, C=best)
    return model, {"C": best, "lowest_logloss_C": lowest,
                   "logloss": {str(c): float(np.mean(v)) for c, v in row_losses.items()}}


def rules_ranking(t: PreparedTable) -> np.ndarray | None:
    """The rules score's churn ranking of every row when the table carries features of the
    data contract (named as in `features.registry`); None when it has none. Missing registered
    features count as missing data, as in the warehouse."""
    present = [c for c in t.features if c in FEATURES_BY_NAME]
    if not present:
        return None
    frame = t.frame[present].copy()
    frame.insert(0, "account_id", t.frame["_id"] if "_id" in t.frame else
                 pd.Series(np.arange(len(frame)).astype(str), index=frame.index))
    frame.insert(1, "as_of", pd.Timestamp("2000-01-01"))
    for spec in FEATURES_BY_NAME.values():
        if spec.name not in frame.columns:
            frame[spec.name] = np.nan
    connected = frozenset(FEATURES_BY_NAME[c].source for c in present)
    score = baselines.rules_scores(frame, connected)
    if score is None or score.isna().all():
        return None
    ranking = baselines.rules_ranking(score.fillna(score.median()), "churn")
    return np.asarray(ranking, dtype=float)


def _fold_predictions(t: PreparedTable, rows: Rows, cfg: TrainingConfig, label: str,
                      refit: bool) -> tuple[Bundle, dict[str, np.ndarray], dict[str, Any]]:
    tr, va, ca, te = rows
    bundle = fit_lightgbm(t, tr, va, ca, cfg, label, refit)
    # The linear candidate learns from the same rows as the trees.
    lr, lr_info = fit_logistic_tuned(t, tr, va, cfg, refit)
    test = t.frame.iloc[te]
    info = {"lightgbm_search": bundle.metadata["search"], "logistic": lr_info}
    preds = {"model": bundle.predict_proba(test),
             "logistic": baselines.predict_logistic(lr, test)}
    # Trees and a line err differently on a table where both are close: their mean often
    # ranks better than either, and costs no fit.
    preds["blend"] = (preds["model"] + preds["logistic"]) / 2
    return bundle, preds, info


def _time_rows(t: PreparedTable, spec: TableSpec) -> tuple[Rows, Any]:
    f = t.frame
    order = np.argsort(f["_time"].to_numpy(), kind="mergesort")
    times = f["_time"].to_numpy()[order]
    cuts = []
    for share in np.cumsum(TIME_WINDOWS):
        i = round(share * len(f))
        # Rows with the same time value stay in one window.
        cuts.append(int(np.searchsorted(times, times[min(i, len(f) - 1)], side="left")))
    tr, va, ca, te = np.split(order, cuts)
    if min(len(tr), len(va), len(ca), len(te)) == 0:
        raise TableError(f"{spec.path}: too few distinct {spec.time!r} values for a "
                         "train / early-stopping / calibration / test split")
    return (tr, va, ca, te), times[cuts[-1]]


def evaluate_table(t: PreparedTable, spec: TableSpec, cfg: TrainingConfig,
                   progress: Progress | None = None) -> ModelResult:
    """Split, fit every candidate, evaluate, choose the champion; returns the LightGBM model
    to save (the servable format), its evaluation and the champion choice (`split`)."""
    f = t.frame
    y = f["label"].to_numpy(float)
    folds: list[dict[str, Any]] = []
    fitting: list[dict[str, Any]] = []
    rules = rules_ranking(t)
    if spec.time is not None:
        rows, first_test = _time_rows(t, spec)
        tr, va, ca, te = rows
        bundle, preds, info = _fold_predictions(t, rows, cfg, spec.label, refit=False)
        fitting.append(info)
        if progress:
            progress("models", 1, 1)
        if rules is not None:
            preds["rules"] = rules[te]
        y_test, test_rows = y[te], f.iloc[te]
        metrics = evaluate.evaluate_rows(y_test, preds, PROBABILITIES)
        folds.append({**metrics, "_test": f"{spec.time} from {first_test}"})
        split = {"scheme": f"time split on {spec.time!r}: train, early stopping, calibration, "
                           "test = 60/10/10/20% of rows in time order",
                 "rows": {"train": len(tr), "valid": len(va), "calib": len(ca),
                          "test": len(te)}}
        basis = "test-window ROC AUC"
    else:
        oof = {k: np.full(len(f), np.nan) for k in ("model", "logistic", "blend")}
        for k, rows in enumerate(cv_folds(y, cfg)):
            te = rows[3]
            # Rows are exchangeable here, so the early-stopping rows can join the final fit.
            _, preds, info = _fold_predictions(t, rows, cfg, spec.label, refit=True)
            fitting.append(info)
            for name, p in preds.items():
                oof[name][te] = p
            if rules is not None:
                preds["rules"] = rules[te]
            folds.append({**evaluate.evaluate_rows(y[te], preds, PROBABILITIES),
                          "_test": f"fold {k}"})
            if progress:
                progress("models", k + 1, cfg.cv_folds + 1)
        # The registered model sees every row; its quality is the cross-validated estimate.
        tr, va, ca = _three_way(np.arange(len(f)), y, cfg.seed)
        bundle = fit_lightgbm(t, tr, va, ca, cfg, spec.label, refit=True)
        if progress:
            progress("models", cfg.cv_folds + 1, cfg.cv_folds + 1)
        preds = dict(oof)
        if rules is not None:
            preds["rules"] = rules
        y_test, test_rows = y, f
        metrics = evaluate.evaluate_rows(y, preds, PROBABILITIES)
        split = {"scheme": f"stratified {cfg.cv_folds}-fold cross-validation (out-of-fold "
                           "predictions; each fold: 70/15/15% train, early stopping, "
                           "calibration); the registered model is refitted on all rows"}
        basis = "pooled out-of-fold ROC AUC"
    split["candidates"] = fitting
    split["champion"] = choose_champion(y_test, preds, cfg.seed, basis,
                                         cfg.champion_se)
    bundle.label = spec.label
    bundle.metadata["renamed_columns"] = t.renamed
    segments = evaluate.by_segment(y_test, preds, test_rows["segment"], PROBABILITIES) \
        if "segment" in test_rows else {}
    return ModelResult(
        label=spec.label, target="table", horizon=0, bundle=bundle, split=split,
        test=metrics, folds=folds, segments=segments, y_test=y_test, test_predictions=preds,
        test_frame=test_rows,
        leakage=leakage_suspects(f, t.features, "label", cfg.leakage_auc),
        registered_as=spec.model_name)


# --- the champion -----------------------------------------------------------------------------

CANDIDATE_NAMES = {"model": "LightGBM", "logistic": "logistic regression",
                   "blend": "the mean of LightGBM's and logistic regression's probabilities",
                   "rules": "the rules score"}
BOOTSTRAP_RESAMPLES = 1000


SIMPLEST_FIRST = ("rules", "logistic", "model", "blend")
"""The candidates from the fewest fitted parameters to the most: the rules score fits none,
a line one weight per feature, trees many, the blend both models."""


def choose_champion(y: np.ndarray, preds: dict[str, np.ndarray | None], seed: int,
                    basis: str, se: float = 1.0) -> dict[str, Any]:
    """The champion by the one-standard-error rule on ROC AUC: the simplest candidate
    (`SIMPLEST_FIRST`) whose AUC is below the best one's by at most `se` bootstrap standard
    errors of the paired difference (0: the best, a tie to the simpler), with bootstrap 95%
    intervals of each AUC and of the champion's lead over each other candidate.

    The best estimate among a few candidates scored on the same rows is optimistic, and more
    so for the more flexible one; a lead within the noise of resampling those rows is weak
    evidence that it ranks better on new rows, so the simpler candidate stays (on the public
    tables of bench/RESULTS.md the choice then held on rows it never saw more often)."""
    scores = {k: np.asarray(v, float) for k, v in preds.items()
              if k in CANDIDATE_NAMES and v is not None}
    aucs = {k: float(roc_auc_score(y, v)) for k, v in scores.items()}
    best = max(aucs, key=lambda k: (aucs[k], -SIMPLEST_FIRST.index(k)))
    boot = evaluate.bootstrap_aucs(y, scores, seed, BOOTSTRAP_RESAMPLES)
    champion = best
    for k in SIMPLEST_FIRST:
        if k in aucs and aucs[best] - aucs[k] <= se * float(np.nanstd(boot[best] - boot[k])):
            champion = k
            break

    def ci(x: np.ndarray) -> list[float]:
        return [float(v) for v in np.nanpercentile(x, [2.5, 97.5])]

    return {
        "scorer": champion, "kind": CANDIDATE_NAMES[champion], "basis": basis,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "rows": int(len(y)), "positives": int(np.asarray(y, float).sum()),
        "rule": f"simplest within {se:g} standard error(s) of the best ({best})",
        "best": best,
        "roc_auc": {k: {"value": v, "ci95": ci(boot[k])} for k, v in aucs.items()},
        "lead": {k: {"value": aucs[champion] - aucs[k], "ci95": ci(boot[champion] - boot[k])}
                 for k in aucs if k != champion},
    }


def champion_note(choice: dict[str, Any], logistic_name: str | None) -> str | None:
    """The report's sentence when LightGBM is not the champion; None when it is."""
    if choice["scorer"] == "model":
        return None
    win, auc = choice["scorer"], choice["roc_auc"]
    lead = choice["lead"]["model"]

    def shown(k: str) -> str:
        lo, hi = auc[k]["ci95"]
        return f"{auc[k]['value']:.3f} [{lo:.3f}, {hi:.3f}]"

    registered = f"registered as {logistic_name}" if logistic_name else \
        "not registered (--no-register)"
    where = {"logistic": f"it is recorded as the winner and {registered}",
             "blend": f"it is recorded as the winner and its logistic regression is {registered}",
             "rules": "it ranks without a fitted model, so nothing else is registered"}[win]
    verdict = (f"LightGBM is beaten by {CANDIDATE_NAMES[win]} on the same rows"
               if lead["value"] >= 0 else
               f"LightGBM does not beat {CANDIDATE_NAMES[win]}, the simpler candidate, by more "
               f"than the noise ({choice['rule']})")
    return (f"{verdict} ({choice['basis']} "
            f"{shown(win)} vs {shown('model')}, lead {lead['value']:+.3f} "
            f"[{lead['ci95'][0]:+.3f}, {lead['ci95'][1]:+.3f}]): {where}; the LightGBM "
            "bundle is kept as the servable model")


def train_table(settings: Settings, spec: TableSpec, *, register: bool = True,
                progress: Progress | None = None) -> JobResult:
    """Read, check, evaluate, register and save a bring-your-own-table model."""
    from training import tracking

    cfg = settings.training
    prepared = prepare_table(load_table(spec.path), spec)
    with threadpool_limits(cfg.num_threads):
        result = evaluate_table(prepared, spec, cfg, progress)
    warnings = [f"{w['feature']} alone predicts {spec.label} with ROC AUC {w['roc_auc']:.3f}: "
                "possible leakage (drop it with --drop if it is known only after the outcome)"
                for w in result.leakage]
    if prepared.dropped_rows:
        warnings.append(f"{prepared.dropped_rows} row(s) without a label were left out")
    run = {"mode": "table", "data_window": f"{spec.path} ({len(prepared.frame)} rows)",
           "feature_set_version": prepared.feature_set_version, "rows": len(prepared.frame),
           "seed": cfg.seed, "features": prepared.features, "label": spec.label}
    choice = result.split["champion"]
    logistic_name = f"{spec.model_name}-logistic" if register else None
    note = champion_note(choice, logistic_name)
    if note:
        warnings.append(note)
    report = build_report({spec.label: result}, run, warnings)
    report["models"][spec.label]["champion"] = result.split.pop("champion")
    run_id = None
    if register:
        fingerprint = hashlib.sha256(pd.util.hash_pandas_object(
            prepared.frame, index=False).to_numpy().tobytes()).hexdigest()[:16]
        run_id = tracking.log_training_job(settings, {spec.label: result}, report,
                                           fingerprint=fingerprint, progress=progress)
        if note:
            _record_beaten(settings, run_id, result, choice, note)
        if choice["scorer"] in ("logistic", "blend") and logistic_name:
            with threadpool_limits(cfg.num_threads):
                model, info = final_logistic(prepared, spec, cfg)
            report["models"][spec.label]["champion"]["registered"] = _register_logistic(
                settings, run_id, logistic_name, model, info, choice, note or "")
    alias = (result.promotion or {}).get("alias", "champion")
    where = Path(settings.paths.models_dir) / "table" / spec.model_name
    if alias != "champion":
        where = where.parent / "challengers" / spec.model_name
    result.bundle.metadata["registry"] = result.promotion or {}
    save_bundle(result.bundle, where)
    evaluate.write_report(report, where)
    return JobResult(report, {spec.label: result}, run_id, {spec.label: where})


def final_logistic(t: PreparedTable, spec: TableSpec, cfg: TrainingConfig
                   ) -> tuple[Pipeline, dict[str, Any]]:
    """The logistic candidate on the rows the registered LightGBM learns from."""
    if spec.time is not None:
        (tr, va, _, _), _ = _time_rows(t, spec)
        return fit_logistic_tuned(t, tr, va, cfg, refit=False)
    tr, va, _ = _three_way(np.arange(len(t.frame)), t.frame["label"].to_numpy(float), cfg.seed)
    return fit_logistic_tuned(t, tr, va, cfg, refit=True)


def _record_beaten(settings: Settings, run_id: str, result: ModelResult,
                   choice: dict[str, Any], note: str) -> None:
    """The LightGBM version says, in the registry and the report, what beat it."""
    from mlflow import MlflowClient

    promo = result.promotion or {}
    if not promo.get("version"):
        return
    client = MlflowClient(tracking_uri=settings.paths.mlflow_uri,
                          registry_uri=settings.paths.mlflow_uri)
    client.set_model_version_tag(promo["model_name"], promo["version"], "hs.beaten_by",
                                 choice["scorer"])
    client.set_tag(run_id, "table_champion", choice["scorer"])
    promo["reason"] = f"{promo['reason']}. {note}"
    client.set_model_version_tag(promo["model_name"], promo["version"], "alias_reason",
                                 promo["reason"])


def _register_logistic(settings: Settings, run_id: str, name: str, model: Pipeline,
                       info: dict[str, Any], choice: dict[str, Any], note: str
                       ) -> dict[str, Any]:
    """Log the winning logistic regression (an sklearn pipeline) in the job's run, register it
    under its own name and give it the champion alias there."""
    import mlflow
    from mlflow import MlflowClient

    from training import tracking

    experiment_id = tracking.configure(settings.paths, settings.training.experiment)
    auc = choice["roc_auc"]["logistic"]
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id), \
            mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}", nested=True):
        mlflow.log_params({"candidate": "logistic", "C": info["C"]})
        mlflow.log_metrics({"roc_auc": auc["value"], "roc_auc_ci95_low": auc["ci95"][0],
                            "roc_auc_ci95_high": auc["ci95"][1]})
        # skops (MLflow's safe format) asks for the numpy dtypes the imputers keep.
        logged = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                          skops_trusted_types=["numpy.dtype"])
    version = str(logged.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", version)
    client.set_model_version_tag(name, version, "alias_reason", note)
    log.info("%s v%s -> champion: %s", name, version, note)
    return {"model_name": name, "version": version, "alias": "champion", "C": info["C"]}
