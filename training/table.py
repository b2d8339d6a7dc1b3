"""Bring your own table: train, evaluate and register a model on one flat file.

`healthscore train --table FILE --label COL [--id COL] [--time COL] [--drop COL ...]` reads a CSV
or Parquet file with one row per example, a binary label and feature columns (numbers, booleans,
or text that becomes a category). With `--time`, rows are split chronologically (earliest 60%
train, then 10% early stopping, 10% calibration, latest 20% test; rows sharing a time value stay
together); without it, stratified k-fold cross-validation estimates performance out of fold and
a final model is fitted on all rows. Fitting, calibration, evaluation, the leakage guard and
MLflow registration are the same code the warehouse models use.

It owns reading and checking the table and the split schemes; it must not re-implement fitting,
metrics or tracking.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from scoring.bundle import save_bundle
from training import baselines, evaluate
from training.datasets import Progress
from training.leakage import leakage_suspects
from training.model import fit_model
from training.pipeline import JobResult, build_report
from training.results import ModelResult
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


def _fold_predictions(t: PreparedTable, tr: np.ndarray, va: np.ndarray, ca: np.ndarray,
                      te: np.ndarray, cfg: TrainingConfig, label: str, refit: bool):
    f = t.frame
    bundle = fit_model(f.iloc[tr], f.iloc[va], f.iloc[ca], t.features, "label", cfg,
                       t.feature_set_version, metadata={"label": label}, refit_with_valid=refit)
    # The baseline learns from the same rows as the trees.
    lr_rows = np.concatenate([tr, va]) if refit else tr
    lr = baselines.fit_logistic(f.iloc[lr_rows], t.features, "label", cfg.seed)
    test = f.iloc[te]
    return bundle, {"model": bundle.predict_proba(test),
                    "logistic": baselines.predict_logistic(lr, test)}


def evaluate_table(t: PreparedTable, spec: TableSpec, cfg: TrainingConfig,
                   progress: Progress | None = None) -> ModelResult:
    """Split, fit, evaluate; returns the model to register and its evaluation."""
    f = t.frame
    y = f["label"].to_numpy(float)
    idx = np.arange(len(f))
    folds: list[dict[str, Any]] = []
    if spec.time is not None:
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
        bundle, preds = _fold_predictions(t, tr, va, ca, te, cfg, spec.label, refit=False)
        if progress:
            progress("models", 1, 1)
        y_test, test_rows = y[te], f.iloc[te]
        metrics = evaluate.evaluate_rows(y_test, preds)
        folds.append({**metrics, "_test": f"{spec.time} from {times[cuts[-1]]}"})
        split = {"scheme": f"time split on {spec.time!r}: train, early stopping, calibration, "
                           "test = 60/10/10/20% of rows in time order",
                 "rows": {"train": len(tr), "valid": len(va), "calib": len(ca),
                          "test": len(te)}}
    else:
        skf = StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        oof = {"model": np.full(len(f), np.nan), "logistic": np.full(len(f), np.nan)}
        for k, (rest, te) in enumerate(skf.split(idx, y)):
            tr, va, ca = _three_way(rest, y, cfg.seed)
            # Rows are exchangeable here, so the early-stopping rows can join the final fit.
            _, preds = _fold_predictions(t, tr, va, ca, te, cfg, spec.label, refit=True)
            for name, p in preds.items():
                oof[name][te] = p
            folds.append({**evaluate.evaluate_rows(y[te], preds), "_test": f"fold {k}"})
            if progress:
                progress("models", k + 1, cfg.cv_folds + 1)
        # The registered model sees every row; its quality is the cross-validated estimate.
        tr, va, ca = _three_way(idx, y, cfg.seed)
        bundle = fit_model(f.iloc[tr], f.iloc[va], f.iloc[ca], t.features, "label", cfg,
                           t.feature_set_version, metadata={"label": spec.label},
                           refit_with_valid=True)
        if progress:
            progress("models", cfg.cv_folds + 1, cfg.cv_folds + 1)
        preds, y_test, test_rows = oof, y, f
        metrics = evaluate.evaluate_rows(y, oof)
        split = {"scheme": f"stratified {cfg.cv_folds}-fold cross-validation (out-of-fold "
                           "predictions; each fold: 70/15/15% train, early stopping, "
                           "calibration); the registered model is refitted on all rows"}
    bundle.label = spec.label
    bundle.metadata["renamed_columns"] = t.renamed
    segments = evaluate.by_segment(y_test, preds, test_rows["segment"]) \
        if "segment" in test_rows else {}
    return ModelResult(
        label=spec.label, target="table", horizon=0, bundle=bundle, split=split,
        test=metrics, folds=folds, segments=segments, y_test=y_test, test_predictions=preds,
        test_frame=test_rows,
        leakage=leakage_suspects(f, t.features, "label", cfg.leakage_auc),
        registered_as=spec.model_name)


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
    report = build_report({spec.label: result}, run, warnings)
    run_id = None
    if register:
        fingerprint = hashlib.sha256(pd.util.hash_pandas_object(
            prepared.frame, index=False).to_numpy().tobytes()).hexdigest()[:16]
        run_id = tracking.log_training_job(settings, {spec.label: result}, report,
                                           fingerprint=fingerprint, progress=progress)
    alias = (result.promotion or {}).get("alias", "champion")
    where = Path(settings.paths.models_dir) / "table" / spec.model_name
    if alias != "champion":
        where = where.parent / "challengers" / spec.model_name
    result.bundle.metadata["registry"] = result.promotion or {}
    save_bundle(result.bundle, where)
    evaluate.write_report(report, where)
    return JobResult(report, {spec.label: result}, run_id, {spec.label: where})
