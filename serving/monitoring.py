"""Monitoring of the live scores: drift against the training reference and, once labels have
matured, how the stored predictions did; with an alert when either goes wrong.

Thin I/O around the pure `scoring.drift` and `scoring.realised`: the reference is the
`reference.json` training saved next to the bundles; the current distribution is the portfolio
scored by the one pipeline as of the latest stored date (in the service the frame it keeps per
snapshot and date, `ServiceState.scored_at`: a second call does not score again); the outcomes
are the warehouse's churn and expansion events; the predictions are the probabilities the daily
job stored with each day's scores. Alerts go through `serving.alerts.apply_alerts` on the
pseudo-account `portfolio` (one open alert per rule, the cool-down, auto-resolve when the
condition clears).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from features.contract.warehouse import connected_tables, today
from scoring.drift import ALL, REFERENCE_FILE, drift_table
from scoring.pipeline import ScoredFrame, Scorer, score_accounts
from scoring.realised import (
    calibration,
    classification_kpi,
    event_within,
    roc_auc,
    top_decile_lift,
    trend_accuracy,
)
from serving.alerts import AlertRules, Condition, apply_alerts
from serving.operations_store import load_probabilities
from serving.store import ScoreStore

logger = logging.getLogger(__name__)

PORTFOLIO = "portfolio"
LABEL = re.compile(r"^(churn|expansion)_(\d+)d$")
EVENTS = {"churn": ("churn_events", "churned_at"), "expansion": ("expansion_events", "ts")}


def load_reference(models_dir: Path) -> tuple[dict[str, Any] | None, Path]:
    path = Path(models_dir) / REFERENCE_FILE
    if not path.exists():
        return None, path
    return json.loads(path.read_text()), path


def outcome_events(con: duckdb.DuckDBPyConnection, target: str) -> pd.DataFrame | None:
    table, column = EVENTS[target]
    if table not in connected_tables(con):
        return None
    with con.cursor() as cur:
        return cur.execute(f"select cast(account_id as varchar) as account_id, "
                           f"{column} as at from {table}").fetchdf()


def realised_metrics(probabilities: pd.DataFrame, con: duckdb.DuckDBPyConnection, data_end: date,
                     min_rows: int) -> list[dict[str, Any]]:
    """ROC AUC, calibration and top-decile lift of each stored label on its matured rows."""
    out = []
    for label, rows in probabilities.groupby("label", sort=True):
        m = LABEL.match(str(label))
        if m is None:
            continue
        target, horizon = m.group(1), int(m.group(2))
        events = outcome_events(con, target)
        matured = rows[rows["as_of"] + pd.Timedelta(days=horizon)
                       <= pd.Timestamp(data_end)].reset_index(drop=True)
        entry: dict[str, Any] = {"label": label, "rows": len(matured),
                                 "dates": int(matured["as_of"].nunique())}
        if events is None or len(matured) < min_rows:
            entry["note"] = (f"no {EVENTS[target][0]} table" if events is None else
                             f"{len(matured)} matured rows (at least {min_rows} needed)")
            out.append(entry)
            continue
        y = event_within(matured, events, horizon)
        p = matured["probability"].to_numpy(dtype=float)
        auc = roc_auc(y, p)
        entry.update({"roc_auc": None if auc is None else round(auc, 4),
                      "calibration": calibration(y, p),
                      "top_decile_lift": (None if (lift := top_decile_lift(y, p)) is None
                                          else round(lift, 3)),
                      "event_rate": round(float(y.mean()), 4)})
        out.append(entry)
    return out


def kpis(probabilities: pd.DataFrame, scores: pd.DataFrame, con: duckdb.DuckDBPyConnection,
         data_end: date, *, churn_threshold: float, trend_days: int,
         dead_band: float) -> dict[str, Any]:
    """Churn and expansion accuracy in the 90-day window (matured rows only) and the
    trend-direction accuracy of the stored scores."""
    out: dict[str, Any] = {}
    for target, threshold in (("churn", churn_threshold), ("expansion", 0.5)):
        rows = probabilities[probabilities["label"] == f"{target}_90d"]
        rows = rows[rows["as_of"] + pd.Timedelta(days=90) <= pd.Timestamp(data_end)]
        events = outcome_events(con, target)
        if events is None or rows.empty:
            out[f"{target}_accuracy_90d"] = {"rows": 0}
            continue
        y = event_within(rows, events, 90)
        out[f"{target}_accuracy_90d"] = classification_kpi(y, rows["probability"].to_numpy(),
                                                           threshold)
    later = scores[["account_id", "as_of", "score"]].copy()
    later["as_of"] = later["as_of"] - pd.Timedelta(days=trend_days)
    both = scores.merge(later, on=["account_id", "as_of"], how="inner", suffixes=("", "_next"))
    out["trend_direction_accuracy"] = trend_accuracy(
        both["trend"].to_numpy(), (both["score_next"] - both["score"]).to_numpy(dtype=float),
        dead_band)
    return out


def monitor(store: ScoreStore, con: duckdb.DuckDBPyConnection, scorer: Scorer, settings: Any,
            *, raise_alerts: bool = True, as_of: date | None = None,
            scored_at: Callable[[date], ScoredFrame] | None = None) -> dict[str, Any]:
    """The monitoring report (what `healthscore monitor` prints and `GET /v1/monitoring`
    answers); with `raise_alerts` the drift and AUC alerts are applied in the store.

    `scored_at(date)`: the portfolio scored by the pipeline as of a date (default: scored here;
    the service hands its per-snapshot frame, so a second call does not score again)."""
    cfg = settings.serving
    notes: list[str] = []
    reference, ref_path = load_reference(settings.paths.models_dir)
    stored_dates = store.dates()
    when = as_of or (stored_dates[-1] if stored_dates else today(con))
    drift: list[dict[str, Any]] = []
    if reference is None:
        notes.append(f"no training reference at {ref_path}: train models to get drift")
    else:
        frame = scored_at(when) if scored_at is not None \
            else score_accounts(con, None, when, scorer, trend=False)
        current = frame.features.copy()
        current["score"] = frame.scores["score"].to_numpy(dtype=float)
        drift = drift_table(reference, current, min_rows=cfg.monitor_min_rows)
    probabilities = load_probabilities(store.engine)
    data_end = today(con)
    realised = realised_metrics(probabilities, con, data_end, cfg.monitor_min_rows)
    if probabilities.empty:
        notes.append("no stored probabilities yet: the daily job stores them with the scores")
    scores = store.load_scores()
    report_kpis = kpis(probabilities, scores, con, data_end,
                       churn_threshold=cfg.alert_churn_probability,
                       trend_days=scorer.rules.trend_days, dead_band=scorer.rules.trend_dead_band)
    conditions = alert_conditions(drift, realised, psi_max=cfg.monitor_psi,
                                  auc_min=cfg.monitor_min_auc)
    if raise_alerts:
        rules = AlertRules(cooldown=timedelta(hours=cfg.alert_cooldown_hours))
        with Session(store.engine) as session, session.begin():
            apply_alerts(session, PORTFOLIO, conditions, rules, as_of=when)
    return {"asOf": when, "reference": str(ref_path) if reference is not None else None,
            "drift": drift, "realised": realised, "kpis": report_kpis,
            "alerts": sorted(conditions), "notes": notes}


def alert_conditions(drift: list[dict[str, Any]], realised: list[dict[str, Any]], *,
                     psi_max: float, auc_min: float) -> dict[str, Condition]:
    """The monitoring's alert conditions by rule: `drift:<column>:<segment>` for a PSI above
    `psi_max`, `auc:<label>` for a realised ROC AUC below `auc_min`."""
    out: dict[str, Condition] = {}
    for row in drift:
        if row["psi"] > psi_max:
            rule = f"drift:{row['column']}:{row['segment']}"
            where = "" if row["segment"] == ALL else f" in segment {row['segment']}"
            out[rule] = Condition(rule, "medium" if row["segment"] != ALL else "high",
                                  f"{row['column']} has drifted from the training reference"
                                  f"{where}: PSI {row['psi']:.2f} > {psi_max}")
    for row in realised:
        auc = row.get("roc_auc")
        if auc is not None and not np.isnan(auc) and auc < auc_min:
            rule = f"auc:{row['label']}"
            out[rule] = Condition(rule, "high", f"{row['label']} realised ROC AUC {auc:.3f} "
                                  f"< {auc_min} on {row['rows']} matured predictions")
    return out
