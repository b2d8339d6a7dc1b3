"""Monitoring: PSI, AUC, calibration and lift on known cases; the drift alert fires on a
deliberately shifted world and not on an unshifted one; realised metrics and KPIs from the
stored probabilities once labels have matured."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from features.contract.warehouse import load_frames
from features.synth.generate import generate_world
from healthscore.settings import load_settings
from scoring.drift import build_reference, drift_table, psi
from scoring.health import load_rules
from scoring.pipeline import Scorer, score_accounts
from scoring.realised import calibration, classification_kpi, roc_auc, top_decile_lift
from serving.daily import score_day
from serving.monitoring import PORTFOLIO, monitor
from serving.ops_store import Alert
from serving.store import open_store
from training.reference import write_reference

START = date(2024, 1, 1)
REF_DATES = [pd.Timestamp("2024-08-01"), pd.Timestamp("2024-09-01"), pd.Timestamp("2024-10-01")]
NOW = date(2024, 11, 1)


def test_psi_auc_lift_and_calibration_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    ref = build_reference(pd.DataFrame({"x": a}), ["x"], bins=10)
    same = drift_table(ref, pd.DataFrame({"x": rng.normal(size=5000)}))[0]["psi"]
    moved = drift_table(ref, pd.DataFrame({"x": rng.normal(0.8, 1, size=5000)}))[0]["psi"]
    gone = drift_table(ref, pd.DataFrame({"x": np.r_[rng.normal(size=2500),
                                                     [np.nan] * 2500]}))[0]["psi"]
    assert same < 0.02 and moved > 0.2 and gone > 0.2
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # By segment: a shift in one segment shows there, not in the other.
    seg = pd.DataFrame({"x": np.r_[a[:2500], a[2500:]], "s": ["a"] * 2500 + ["b"] * 2500})
    ref = build_reference(seg, ["x"], segment="s")
    cur = seg.assign(x=np.r_[a[:2500] + 1.0, rng.normal(size=2500)])
    got = {r["segment"]: r["psi"] for r in drift_table(ref, cur)}
    assert got["a"] > 0.2 and got["b"] < 0.05 and set(got) == {"(all)", "a", "b"}
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.zeros(3), np.ones(3)) is None
    y = (rng.random(1000) < 0.1).astype(float)
    assert top_decile_lift(y, y + rng.random(1000) * 0.1) == pytest.approx(y.sum() / 100 / 0.1 *
                                                                           0.1 / y.mean(), 0.01)
    p = rng.random(20000)
    assert calibration((rng.random(20000) < p).astype(float), p)["ece"] < 0.02
    k = classification_kpi(np.array([1, 0, 0, 0]), np.array([0.9, 0.6, 0.1, 0.2]), 0.5)
    assert k["accuracy"] == 0.75 and k["always_no_accuracy"] == 0.75 and k["recall"] == 1.0


@pytest.fixture(scope="module")
def world():
    return generate_world(500, START, 320, 31)


def _warehouse(tables):
    con = duckdb.connect(":memory:")
    load_frames(con, tables)
    return con


@pytest.fixture(scope="module")
def models_dir(world, tmp_path_factory):
    """What training saves: the reference of the training rows' features and rules score."""
    con = _warehouse(world.tables)
    # The training rows: the accounts active at each as-of date, as training's entities are.
    frames = [score_accounts(con, None, d, Scorer(rules=load_rules()), trend=False)
              for d in REF_DATES]
    feats = pd.concat([f.features for f in frames], ignore_index=True)
    score = np.concatenate([f.scores["score"].to_numpy(dtype=float) for f in frames])
    out = tmp_path_factory.mktemp("models")
    names = [c for c in feats.columns if c not in ("account_id", "as_of")]
    write_reference(feats.assign(score=score), names, out)
    return out


def _monitor(tables, models_dir, tmp_path):
    settings = load_settings(paths={"models_dir": str(models_dir),
                                    "store_url": f"sqlite:///{tmp_path / 's.db'}"},
                             serving={"monitor_min_rows": 200})
    con = _warehouse(tables)
    with open_store(settings.paths.store_url) as store:
        report = monitor(store, con, Scorer(rules=load_rules()), settings, as_of=NOW)
        with Session(store.engine) as s:
            open_rules = [a.rule for a in s.scalars(select(Alert).where(
                Alert.account_id == PORTFOLIO, Alert.status == "open"))]
    return report, open_rules


def test_no_drift_alert_on_an_unshifted_world(world, models_dir, tmp_path):
    report, rules = _monitor(world.tables, models_dir, tmp_path)
    worst = max(report["drift"], key=lambda r: r["psi"])
    assert report["drift"] and worst["psi"] <= 0.2, worst
    assert not [r for r in rules if r.startswith("drift:")]


def test_the_drift_alert_fires_on_a_shifted_world(world, models_dir, tmp_path):
    tables = dict(world.tables)
    usage = tables["usage_events"]
    keep = np.random.default_rng(1).random(len(usage)) < 0.3  # seven in ten events vanish
    tables["usage_events"] = usage[keep].reset_index(drop=True)
    report, rules = _monitor(tables, models_dir, tmp_path)
    drifted = [r for r in rules if r.startswith("drift:")]
    assert "drift:score:(all)" in drifted or any(r.endswith(":(all)") for r in drifted)
    assert any(r["psi"] > 0.2 for r in report["drift"])


def test_realised_metrics_and_kpis_from_stored_probabilities(world, tmp_path):
    """Probabilities stored by the daily job at two dates; once 90 days have passed the
    realised AUC of each label is measured against the warehouse's churn events."""
    con = _warehouse(world.tables)
    rules = load_rules()
    settings = load_settings(paths={"store_url": f"sqlite:///{tmp_path / 'r.db'}",
                                    "models_dir": str(tmp_path / "none")},
                             serving={"monitor_min_rows": 50})

    scorer = Scorer(rules=rules)
    with open_store(settings.paths.store_url) as store:
        for when in (date(2024, 7, 1), date(2024, 7, 8)):
            result = score_day(con, store, scorer, settings.serving, when)
            assert result.written > 100
        # No models: the stored probabilities are written by hand as the rules risk.
        from serving.operations_store import write_probabilities

        frame = store.load_scores()
        with Session(store.engine) as s, s.begin():
            for when, rows in frame.groupby("as_of"):
                risk = dict(zip(rows["account_id"], (100 - rows["score"]) / 100, strict=True))
                write_probabilities(s, when.date(), {"churn_90d": risk, "churn_30d": risk})
        report = monitor(store, con, scorer, settings, raise_alerts=False)
    by_label = {r["label"]: r for r in report["realised"]}
    assert set(by_label) == {"churn_30d", "churn_90d"}
    assert by_label["churn_90d"]["rows"] > 200
    assert 0.55 < by_label["churn_90d"]["roc_auc"] <= 1.0
    assert by_label["churn_90d"]["top_decile_lift"] > 1.0
    assert by_label["churn_90d"]["calibration"]["bins"]
    kpi = report["kpis"]["churn_accuracy_90d"]
    assert kpi["rows"] == by_label["churn_90d"]["rows"] and "always_no_accuracy" in kpi
    assert report["kpis"]["trend_direction_accuracy"]["rows"] > 0
    assert any("no training reference" in n for n in report["notes"])
