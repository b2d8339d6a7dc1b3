"""A training job, end to end: training set, backtest, the six models, report, registry, bundles.

For each target (churn, expansion) the test window is shared by every horizon (it sits where the
longest horizon still has labels) so the horizons' probabilities can be made monotone on the same
rows; each horizon keeps its own gaps before it. Each rolling-origin fold fits one model per
horizon (training.model), predicts the fold's test rows, makes them monotone across horizons and
scores them next to the baselines (training.baselines). Fold 0, the latest, gives the held-out
test figures; every fold together gives the backtest that decides promotion. The backtest is
first fitted to the history (`plan_backtests`: horizons that do not fit skipped, windows shrunk,
each with a note), and the model registered is then refit on every labelled row with the folds'
tree count and an out-of-fold calibrator (`refit_registered`).

This module orchestrates; the fitting, metrics and MLflow code live in their own modules.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from features.registry import FEATURE_SET_VERSION
from scoring.bundle import Bundle, category_levels, encode_frame, monotone_horizons, save_bundle
from scoring.linear import LinearModel
from training import baselines, evaluate, selection, tracking
from training.datasets import (
    MAX_FEATURE_WINDOW_DAYS,
    Progress,
    TrainingSet,
    as_of_dates,
    build_training_set,
)
from training.leakage import leakage_suspects
from training.model import (
    fit_model,
    monotone_constraints,
    out_of_fold_calibrator,
    refit_choice,
    refit_model,
)
from training.oracle import estimate_state
from training.reference import write_reference
from training.results import ModelResult
from training.search import search_lightgbm
from training.settings import TrainingConfig
from training.splits import BacktestPlan, Windows, in_window, plan_backtest

if TYPE_CHECKING:  # the composed settings object of the entry point
    from healthscore.settings import Settings

log = logging.getLogger(__name__)

LABEL = re.compile(r"^(churn|expansion)_\d+d$")


def wanted_windows(cfg: TrainingConfig) -> Windows:
    """The backtest sizes the config asks for (`plan_backtests` may shrink them)."""
    return Windows(valid_dates=cfg.valid_dates, calib_dates=cfg.calib_dates,
                   test_dates=cfg.test_dates, n_folds=cfg.n_folds)


def plan_backtests(ts: TrainingSet, cfg: TrainingConfig, targets: Sequence[str]
                   ) -> dict[str, BacktestPlan]:
    """Each target's backtest fitted to the training set's history (training.splits)."""
    return {t: plan_backtest(t, {h: ts.labelled_dates(f"{t}_{h}d") for h in cfg.horizons},
                             wanted_windows(cfg), frequency=cfg.as_of_frequency,
                             lead_days=MAX_FEATURE_WINDOW_DAYS, shrink=cfg.fit_to_history)
            for t in targets}


def _rows(frame: pd.DataFrame, dates: Sequence[pd.Timestamp], label: str) -> pd.DataFrame:
    part = frame[in_window(frame["as_of"], dates)]
    return part[part[label].notna()]


def targets_with_labels(ts: TrainingSet, cfg: TrainingConfig) -> list[str]:
    out = []
    for t in cfg.targets:
        cols = [f"{t}_{h}d" for h in cfg.horizons]
        if ts.frame[cols].notna().any(axis=None):
            out.append(t)
        else:
            log.warning("no %s labels (is its source table connected?): no %s models", t, t)
    return out


def train_and_backtest(
    ts: TrainingSet,
    cfg: TrainingConfig,
    *,
    rules: pd.Series | None = None,
    truth: pd.DataFrame | None = None,
    feature_set_version: str = FEATURE_SET_VERSION,
    targets: Sequence[str] | None = None,
    progress: Progress | None = None,
    logistic: bool = True,
    plans: dict[str, BacktestPlan] | None = None,
    refit: bool = True,
) -> dict[str, ModelResult]:
    """Backtest every (target, horizon) model, then refit the kept one on all labelled rows.

    `plans`: the backtest of each target (default: `plan_backtests`). `refit=False` keeps fold
    0's models instead of refitting (a re-run that only needs the backtest).
    `logistic=False` skips the logistic-regression baseline (re-runs and benches)."""
    # BLAS and OpenMP pools default to every core; on a shared machine their spinning threads
    # make the logistic baseline much slower, so they get the configured thread count.
    with threadpool_limits(cfg.num_threads):
        return _train_and_backtest(ts, cfg, rules=rules, truth=truth,
                                   feature_set_version=feature_set_version, targets=targets,
                                   progress=progress, logistic=logistic, plans=plans,
                                   refit=refit)


def _train_and_backtest(
    ts: TrainingSet,
    cfg: TrainingConfig,
    *,
    rules: pd.Series | None,
    truth: pd.DataFrame | None,
    feature_set_version: str,
    targets: Sequence[str] | None,
    progress: Progress | None,
    logistic: bool,
    plans: dict[str, BacktestPlan] | None,
    refit: bool,
) -> dict[str, ModelResult]:
    frame = ts.frame
    targets = list(targets) if targets is not None else targets_with_labels(ts, cfg)
    state = estimate_state(frame, ts.features, truth, cfg.seed, cfg.num_threads, targets,
                           None if progress is None else lambda d, n: progress("oracle", d, n))
    plans = {t: p for t, p in (plans or plan_backtests(ts, cfg, targets)).items()
             if t in targets}
    plan = {t: p.folds for t, p in plans.items()}
    total = sum(p.n_folds * len(p.horizons) + refit * len(p.horizons) for p in plans.values())
    done = 0
    results: dict[str, ModelResult] = {}
    fitted = ("model", "logistic") if logistic else ("model",)
    for t in targets:
        horizons = list(plans[t].horizons)
        n_folds = plans[t].n_folds
        for note in plans[t].notes:
            log.warning("%s", note)
        fold_metrics: dict[int, list[dict[str, Any]]] = {h: [] for h in horizons}
        pooled: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray | None], pd.DataFrame]]] = {
            h: [] for h in horizons}
        out_of_fold: dict[int, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {
            h: {c: [] for c in fitted} for h in horizons}
        fold_bundles: dict[int, dict[str, list[Bundle]]] = {
            h: {c: [] for c in fitted} for h in horizons}
        first: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for k in range(n_folds):
            test_dates = plan[t][horizons[0]][k].test
            test_rows = frame[in_window(frame["as_of"], test_dates)]
            bundles: dict[str, dict[int, Bundle]] = {c: {} for c in fitted}
            trains: dict[int, pd.DataFrame] = {}
            for h in horizons:
                label, split = f"{t}_{h}d", plan[t][h][k]
                train = trains[h] = ts.training_rows(label, split.train)
                valid, calib = (_rows(frame, split.window(w), label) for w in ("valid", "calib"))
                refit_rows = ts.training_rows(label, split.refit) \
                    if cfg.fold_refit and len(split.refit) > len(split.train) else None
                meta = {"target": t, "horizon": h, "split": split.describe()}
                start_C = None
                if logistic:  # first: its C is the one LightGBM may boost from
                    bundles["logistic"][h] = selection.fit_logistic(
                        train, valid, ts.features, label, cfg, feature_set_version,
                        metadata=meta, refit_rows=refit_rows)
                    start_C = float(bundles["logistic"][h].metadata["selection"]["C"])
                bundles["model"][h] = fit_searched(train, valid, calib, ts.features, label, cfg,
                                                   feature_set_version, meta, refit_rows,
                                                   start_C)
                done += 1
                if progress:
                    progress("models", done, total)
            # Each model predicts the fold's test rows once: the raw logits are the out-of-fold
            # predictions its refit is calibrated on, their calibrated probabilities (the
            # horizons of one candidate made monotone together, as serving does) what is scored.
            raw = {c: {h: bundles[c][h].predict_raw(test_rows) for h in horizons}
                   for c in fitted}
            mono = {c: monotone_horizons(np.column_stack(
                [bundles[c][h].calibrator.apply(raw[c][h]) for h in horizons])) for c in fitted}
            for j, h in enumerate(horizons):
                label = f"{t}_{h}d"
                observed = test_rows[label].notna().to_numpy()
                rows = test_rows[observed]
                y = rows[label].to_numpy(float)
                preds: dict[str, np.ndarray | None] = {
                    "model": mono["model"][observed, j],
                    "logistic": mono["logistic"][observed, j] if logistic else None,
                    "rules": None if rules is None else baselines.rules_ranking(
                        rules.loc[rows.index], t),
                    "oracle": baselines.oracle_probabilities(truth, rows, h, t, state),
                }
                metrics = evaluate.evaluate_rows(y, preds)
                metrics["_test"] = [d.date().isoformat() for d in test_dates]
                fold_metrics[h].append(metrics)
                pooled[h].append((y, preds, rows))
                for c in fitted:
                    out_of_fold[h][c].append((raw[c][h][observed], y))
                    fold_bundles[h][c].append(bundles[c][h])
                if k == 0:
                    first[h] = (plan[t][h][0].describe(),
                                leakage_suspects(trains[h], ts.features, label, cfg.leakage_auc))
        for h in horizons:
            label = f"{t}_{h}d"
            y, preds, rows = _pooled(pooled[h])
            metrics = evaluate.evaluate_rows(y, preds)
            choice = selection.choose_champion(y, preds, cfg.seed, cfg.bootstrap_resamples,
                                               rows["account_id"].to_numpy())
            segments = evaluate.by_segment(y, preds, rows["segment"]) \
                if "segment" in rows else {}
            split, leakage = first[h]
            result = ModelResult(
                label=label, target=t, horizon=h, bundle=fold_bundles[h]["model"][0],
                split=split, test=metrics, folds=fold_metrics[h], segments=segments, y_test=y,
                test_predictions=preds, test_frame=rows, leakage=leakage, pooled=metrics,
                selection=choice)
            results[label] = result
            if refit:
                result.bundle = refit_champion(
                    ts, label, cfg, feature_set_version, choice["scorer"], fold_bundles[h],
                    out_of_fold[h], plans[t], rules)
                done += 1
                if progress:
                    progress("models", done, total)
    return results


def fit_searched(train: pd.DataFrame, valid: pd.DataFrame, calib: pd.DataFrame,
                 features: Sequence[str], label: str, cfg: TrainingConfig,
                 feature_set_version: str, metadata: dict[str, Any],
                 refit_rows: pd.DataFrame | None = None,
                 start_C: float | None = None) -> Bundle:
    """The LightGBM candidate of one fold: its parameters searched by successive halving on the
    fold's training and early-stopping rows (`training.search`, within `search_trials` and
    `search_seconds`), then fitted and calibrated as any model (`training.model.fit_model`).
    The calibration and test windows stay out of the search. `refit_rows`: the fold's rows the
    chosen model is refit on before calibration (`TrainingConfig.fold_refit`). `start_C`: the
    fold's logistic candidate's C; given, the search also tries boosting from a logistic fit
    with it (`TrainingConfig.lightgbm_start`)."""
    search = None
    run_cfg = cfg
    encoded = None
    lines: dict[str, LinearModel] = {}
    monotone = monotone_constraints(features, label, cfg)
    if start_C is None and cfg.lightgbm_start == "logistic":  # a re-run without the candidate
        start_C = float(selection.fit_logistic(train, valid, features, label, cfg,
                                               feature_set_version).metadata["selection"]["C"])
    if cfg.search_trials > 1:
        cats = category_levels(train, features)
        encoded = (cats, {k: encode_frame(v, features, cats, what=label)
                          for k, v in (("train", train), ("valid", valid))})
        y_train = train[label].to_numpy(float)
        matrices, C = encoded[1], start_C

        def margins() -> tuple[np.ndarray, np.ndarray]:
            """The line's log-odds, fitted only if a candidate boosts from it (and kept for
            the fit below)."""
            assert C is not None
            line = lines["train"] = selection.linear_start(
                matrices["train"], y_train, features, list(cats), C, cfg.seed, monotone)
            return (line.predict(matrices["train"], raw_score=True),
                    line.predict(matrices["valid"], raw_score=True))

        search = search_lightgbm(
            matrices["train"], y_train, matrices["valid"], valid[label].to_numpy(float),
            features, list(cats), cfg, monotone, start=None if C is None else margins)
        run_cfg = search.config(cfg)
    bundle = fit_model(train, valid, calib, features, label, run_cfg, feature_set_version,
                       metadata=metadata, encoded=encoded, refit_rows=refit_rows,
                       start_C=start_C, start_line=lines.get("train"))
    bundle.metadata["search"] = search.summary() if search else None
    return bundle


def _pooled(parts: Sequence[tuple[np.ndarray, dict[str, np.ndarray | None], pd.DataFrame]]
            ) -> tuple[np.ndarray, dict[str, np.ndarray | None], pd.DataFrame]:
    """Every fold's test rows and predictions together (scorers present in every fold)."""
    y = np.concatenate([p[0] for p in parts])
    names = [n for n in parts[0][1] if all(q[1].get(n) is not None for q in parts)]
    preds: dict[str, np.ndarray | None] = {
        n: np.concatenate([np.asarray(q[1][n], float) for q in parts]) for n in names}
    return y, preds, pd.concat([p[2] for p in parts])


def refit_champion(
    ts: TrainingSet,
    label: str,
    cfg: TrainingConfig,
    feature_set_version: str,
    champion: str,
    fold_bundles: dict[str, list[Bundle]],
    out_of_fold: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    plan: BacktestPlan,
    rules: pd.Series | None,
) -> Bundle:
    """The champion, refit on every labelled row of `label`: LightGBM with the folds' searched
    parameters and tree count (`refit_registered`), logistic regression with the C most folds
    chose, or the rules score's logistic line; the fitted ones calibrated on the folds'
    out-of-fold predictions."""
    t, h = label.rsplit("_", 1)[0], int(label.rsplit("_", 1)[1].rstrip("d"))
    rows = ts.frame[ts.frame[label].notna()]
    meta = {"target": t, "horizon": h, "backtest": plan.describe(),
            "split": fold_bundles["model"][0].metadata.get("split", {})}
    if champion == "model":
        return refit_registered(ts, label, cfg, feature_set_version, fold_bundles["model"],
                                out_of_fold["model"], plan)
    if champion == "logistic":
        folds = fold_bundles["logistic"]
        bundle = selection.fit_logistic(rows, None, ts.features, label, cfg, feature_set_version,
                                        C=selection.refit_C(folds), metadata=meta)
        calibrator, calibration = out_of_fold_calibrator(
            out_of_fold["logistic"], [b.calibrator.method for b in folds],
            cfg.isotonic_min_positives)
        bundle.calibrator = calibrator
        bundle.metadata["calibration"] = calibration
        bundle.metadata["selection"]["refit"] = {
            "C": bundle.booster.C, "rule": "the C most folds chose",
            "C_by_fold": [b.metadata["selection"]["C"] for b in folds]}
        return bundle
    from scoring.health import load_rules

    assert rules is not None  # the rules candidate exists only with a rules score
    return selection.fit_rules_model(rows, rules.loc[rows.index], ts.features, label,
                                     load_rules(), ts.connected, feature_set_version, meta)


def refit_registered(
    ts: TrainingSet,
    label: str,
    cfg: TrainingConfig,
    feature_set_version: str,
    fold_bundles: Sequence[Bundle],
    out_of_fold: Sequence[tuple[np.ndarray, np.ndarray]],
    plan: BacktestPlan,
) -> Bundle:
    """The LightGBM model to register: refit on every labelled row of `label` (every snapshot
    up to the data's end, the backtest's test windows and the newest months included) with the
    latest fold's searched parameters and the tree count of the folds that chose them,
    calibrated on the folds' out-of-fold predictions (training.model).

    The backtest's figures are the fold models'; this model has no held-out rows left, which is
    the point: the months the folds held back for early stopping, calibration and test are the
    newest ones, the most like the months it will score."""
    t, h = label.rsplit("_", 1)[0], int(label.rsplit("_", 1)[1].rstrip("d"))
    searched = (fold_bundles[0].metadata.get("search") or {}).get("params")
    if searched:
        cfg = cfg.model_copy(update=searched)
        same = [b for b in fold_bundles
                if (b.metadata.get("search") or {}).get("params") == searched]
    else:
        same = list(fold_bundles)
    choice = refit_choice([b.metadata["selection"] for b in same], cfg.max_trees)
    calibrator, calibration = out_of_fold_calibrator(
        out_of_fold, [b.calibrator.method for b in fold_bundles], cfg.isotonic_min_positives)
    rows = ts.frame[ts.frame[label].notna()]
    # A start from the logistic fit: the C most of those folds' lines had (latest on a tie).
    starts = [float(b.metadata["selection"]["start"]["C"]) for b in same
              if "start" in b.metadata["selection"]]
    start_C = selection.most_chosen(starts) if starts else None
    return refit_model(rows, ts.features, label, cfg, feature_set_version, choice, calibrator,
                       metadata={"target": t, "horizon": h, "calibration": calibration,
                                 "split": fold_bundles[0].metadata.get("split", {}),
                                 "backtest": plan.describe(), "search": searched},
                       start_C=start_C)


def build_report(results: dict[str, ModelResult], run: dict[str, Any],
                 warnings: Sequence[str] = ()) -> dict[str, Any]:
    return {"run": run, "warnings": list(warnings),
            "models": {label: r.to_report() for label, r in results.items()}}


def record_fit(report: dict[str, Any], results: dict[str, ModelResult],
               plans: dict[str, BacktestPlan]) -> None:
    """Say in the report how the backtest was fitted to the history (its notes: horizons
    skipped, windows shrunk) and what data each registered model saw."""
    report["notes"] = [n for p in plans.values() for n in p.notes]
    report["run"]["backtest"] = {t: p.describe() for t, p in plans.items()}
    for label, r in results.items():
        if label in report["models"] and "trained_on" in r.bundle.metadata:
            report["models"][label]["trained_on"] = r.bundle.metadata["trained_on"]
            report["models"][label]["refit"] = r.bundle.metadata["selection"].get("refit", {})


def metrics_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model and scorer (the CLI's table and --json output)."""
    rows = []
    for label, m in report["models"].items():
        champion = (m.get("champion") or {}).get("scorer", "model")
        for scorer, metrics in m["test"].items():
            rows.append({"model": label, "scorer": scorer,
                         **{k: metrics.get(k) for k in ("rows", "positives",
                                                        *evaluate.HEADLINE)},
                         "champion": scorer == champion,
                         "alias": m.get("promotion", {}).get("alias") if scorer == champion
                         else None})
    return rows


@dataclass
class JobResult:
    report: dict[str, Any]
    results: dict[str, ModelResult]
    run_id: str | None
    bundle_dirs: dict[str, Path]
    training_set: TrainingSet | None = None


def load_truth(path: Path) -> pd.DataFrame | None:
    """The generator's ground truth (`truth.parquet` next to synthetic raw data), if present."""
    return pd.read_parquet(path) if Path(path).exists() else None


def run_training_job(
    settings: Settings,
    *,
    warehouse: Path | None = None,
    as_of_start: date | str | None = None,
    as_of_end: date | str | None = None,
    truth: pd.DataFrame | None = None,
    register: bool = True,
    progress: Progress | None = None,
    training_set: TrainingSet | None = None,
) -> JobResult:
    """`healthscore train`: from the warehouse to registered models and saved bundles.

    `training_set` skips the feature build (a notebook or test training twice on one set).
    """
    cfg = settings.training
    clock = time.perf_counter()
    ts = training_set or load_training_set(settings, warehouse, as_of_start, as_of_end, progress)
    dates = list(ts.split_dates) if ts.split_dates is not None else ts.dates
    log.info("training set: %d rows in %.1f s", len(ts.frame), time.perf_counter() - clock)
    feats = ts.frame[["account_id", "as_of", *ts.features]]
    rules = baselines.rules_scores(feats, ts.connected)
    warnings = [] if rules is not None else [
        "the rules baseline is absent (scoring.health unavailable or failed): see the log"]
    clock = time.perf_counter()
    plans = plan_backtests(ts, cfg, targets_with_labels(ts, cfg))
    results = train_and_backtest(ts, cfg, rules=rules, truth=truth, progress=progress,
                                 plans=plans, targets=list(plans))
    log.info("backtest and models: %.1f s", time.perf_counter() - clock)
    fingerprint = ts.fingerprint(f"{cfg.targets[0]}_{cfg.horizons[-1]}d")
    run = {
        "mode": "warehouse",
        "data_window": f"{dates[0].date()} .. {dates[-1].date()} ({len(dates)} as-of dates, "
                       f"{cfg.as_of_frequency}" + (
                           f"; {len(ts.dates) - len(dates)} more {cfg.train_as_of_frequency} "
                           "dates for training only" if ts.split_dates is not None else "")
                       + f"); data ends {ts.data_end.date()}",
        "feature_set_version": FEATURE_SET_VERSION,
        "rows": len(ts.frame),
        "seed": cfg.seed,
        "features": ts.features,
        "connected": sorted(ts.connected),
    }
    for r in results.values():
        note = selection.beaten_note(r.label, r.selection) if r.selection else None
        if note:
            warnings.append(note)
        for w in r.leakage:
            warnings.append(f"{r.label}: {w['feature']} alone has ROC AUC {w['roc_auc']:.3f}"
                            " (possible leakage)")

    def rebacktest(params: dict[str, Any], label: str) -> float | None:
        """The champion's configuration re-run on this job's backtest (same data, same folds)."""
        other = cfg.model_copy(update={**params, "search_trials": 0})
        target = label.split("_")[0]
        redo = train_and_backtest(ts, other, rules=None, truth=None, targets=[target],
                                  logistic=False, plans=plans, refit=False)
        return redo[label].selection["roc_auc"]["model"]["value"] if label in redo else None

    report = build_report(results, run, warnings)
    record_fit(report, results, plans)
    run_id = None
    if register:
        clock = time.perf_counter()
        run_id = tracking.log_training_job(
            settings, results, report, fingerprint=fingerprint, rebacktest=rebacktest,
            progress=progress)
        log.info("MLflow logging and registry: %.1f s", time.perf_counter() - clock)
    bundle_dirs = save_bundles(results, settings.paths.models_dir, report)
    # What serving's drift monitoring compares today's features and scores with.
    write_reference(feats if rules is None else feats.assign(score=rules.to_numpy()),
                    ts.features, settings.paths.models_dir)
    return JobResult(report, results, run_id, bundle_dirs, ts)


def load_training_set(
    settings: Settings,
    warehouse: Path | None = None,
    as_of_start: date | str | None = None,
    as_of_end: date | str | None = None,
    progress: Progress | None = None,
) -> TrainingSet:
    """The training set of the configured as-of dates, read from the warehouse."""
    from features.contract.warehouse import connect

    cfg = settings.training
    con = connect(warehouse or settings.paths.warehouse, read_only=True)
    try:
        start, end = as_of_start or cfg.as_of_start, as_of_end or cfg.as_of_end
        dates = as_of_dates(con, start, end, cfg.as_of_frequency, cfg.horizons)
        if not cfg.train_as_of_frequency:
            return build_training_set(con, dates, settings.features, cfg.horizons, progress)
        # Extra snapshots only before the last split date: they can only ever be training rows.
        extra = [d for d in as_of_dates(con, start, end, cfg.train_as_of_frequency, cfg.horizons)
                 if d < dates[-1]]
        ts = build_training_set(con, sorted(set(dates) | set(extra)), settings.features,
                                cfg.horizons, progress)
        ts.split_dates = tuple(dates)
        return ts
    finally:
        con.close()


def save_bundles(results: dict[str, ModelResult], models_dir: Path, report: dict[str, Any]
                 ) -> dict[str, Path]:
    """Champions (or every model when nothing was registered) go to `models_dir/<label>` for
    serving; challengers to `models_dir/challengers/<label>` so serving never picks them up.

    A model of an earlier job that this job did not train (a horizon now skipped for short
    history, a target without labels) is removed from both: serving must never score with an
    old model beside the new ones."""
    out = {}
    for where in (Path(models_dir), Path(models_dir) / "challengers"):
        for old in sorted(where.glob("*/bundle.json")):
            if LABEL.match(old.parent.name) and old.parent.name not in results:
                log.warning("removing %s: this job trained no %s model", old.parent,
                            old.parent.name)
                shutil.rmtree(old.parent)
    for label, r in results.items():
        alias = (r.promotion or {}).get("alias", "champion")
        where = Path(models_dir) / label if alias == "champion" else \
            Path(models_dir) / "challengers" / label
        r.bundle.metadata["registry"] = r.promotion or {}
        out[label] = save_bundle(r.bundle, where)
    evaluate.write_report(report, Path(models_dir) / "last_report")
    return out

