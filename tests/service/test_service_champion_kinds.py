"""The API serves a champion that is not a plain LightGBM booster: with LightGBM boosted from a
logistic fit for churn at 30 days, logistic-regression champions for the other churn horizons
and rules-score champions for expansion (the kinds the backtest can pick besides plain trees),
`/v1/predict` gives the probabilities `healthscore predict` writes for the same account and
`/v1/analyze` explains every model with its factors in log-odds.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.support.service_fixtures import service_client

LABELS = [f"{t}_{h}d" for t in ("churn", "expansion") for h in (30, 60, 90)]
KINDS = {"churn_30d": "lightgbm_on_logistic", "churn_60d": "logistic", "churn_90d": "logistic",
         "expansion_30d": "rules", "expansion_60d": "rules", "expansion_90d": "rules"}


def _champions(warehouse, models_dir) -> None:
    """The champions of `KINDS`, fitted by training's own candidate code on the warehouse's
    features (labels: logins plus noise)."""
    from features.build import build_features
    from features.contract.warehouse import connect, connected_tables
    from features.registry import FEATURE_SET_VERSION, FEATURES
    from features.settings import FeatureConfig
    from scoring.bundle import save_bundle
    from scoring.health import load_rules, score_frame
    from training.model import fit_model
    from training.selection import fit_logistic, fit_rules_model
    from training.settings import TrainingConfig

    con = connect(warehouse, read_only=True)
    ids = [r[0] for r in con.execute("select account_id from accounts").fetchall()]
    connected = frozenset(connected_tables(con))
    dates = [pd.Timestamp("2024-09-01"), pd.Timestamp("2024-11-01")]
    ents = pd.DataFrame({"account_id": ids * len(dates),
                         "as_of": [d for d in dates for _ in ids]})
    feats = build_features(con, ents, FeatureConfig())
    con.close()
    names = [f.name for f in FEATURES]
    rules = load_rules()
    score = score_frame(feats, connected, rules)["score"]
    rng = np.random.default_rng(5)
    logins = np.nan_to_num(feats["logins_30d"].to_numpy(dtype=float))
    for label in LABELS:
        target, h = label.split("_")[0], int(label.split("_")[1].rstrip("d"))
        signal = -logins if target == "churn" else logins
        frame = feats.copy()
        frame[label] = (signal + rng.normal(0, np.std(logins) + 1, len(logins))
                        > np.quantile(signal, 1 - 0.1 * h / 30)).astype(float)
        early, late = frame.iloc[: len(ids)], frame.iloc[len(ids):]
        if KINDS[label] == "lightgbm_on_logistic":
            bundle = fit_model(early, late, late, names, label,
                               TrainingConfig(lightgbm_start="logistic", min_child_samples=10),
                               FEATURE_SET_VERSION, start_C=0.3)
        elif KINDS[label] == "logistic":
            bundle = fit_logistic(early, late, names, label, TrainingConfig(),
                                  FEATURE_SET_VERSION)
        else:
            bundle = fit_rules_model(frame, score, names, label, rules, connected,
                                     FEATURE_SET_VERSION)
        save_bundle(bundle, models_dir / label)


@pytest.fixture(scope="module")
def root(world_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    shutil.copy(world_root / "warehouse.duckdb", root / "warehouse.duckdb")
    _champions(root / "warehouse.duckdb", root / "models")
    return root


@pytest.fixture(scope="module")
def client(root, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    with service_client(root, url) as c:
        yield c


@pytest.fixture(scope="module")
def predicted(root):
    """`healthscore predict` on the same warehouse and models."""
    from healthscore.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEALTHSCORE_PATHS__WAREHOUSE", str(root / "warehouse.duckdb"))
        mp.setenv("HEALTHSCORE_PATHS__MODELS_DIR", str(root / "models"))
        out = CliRunner().invoke(app, ["predict", "--out", str(root / "p.csv")])
    assert out.exit_code == 0, out.output
    return pd.read_csv(root / "p.csv", dtype={"account_id": str}).set_index("account_id")


def test_the_models_served_are_the_boosted_logistic_and_rules_champions(root):
    from scoring.bundle import load_bundles

    kinds = {label: b.kind for label, b in load_bundles(root / "models").items()}
    assert kinds == KINDS


def test_predict_over_http_equals_healthscore_predict(client, predicted):
    for account in ("A00016", predicted.index[len(predicted) // 2]):
        r = client.post("/v1/predict", json={"accountId": account})
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["available"]
        for label in LABELS:
            assert p["probabilities"][label] == pytest.approx(predicted.loc[account, label],
                                                              abs=1e-6), (account, label)
        for target in ("churn", "expansion"):
            ps = [p["probabilities"][f"{target}_{h}d"] for h in (30, 60, 90)]
            assert ps == sorted(ps)


def test_analyze_explains_every_champion_with_its_factors(client, predicted):
    account = "A00016"
    r = client.post("/v1/analyze", json={"accountId": account, "topK": 3})
    assert r.status_code == 200, r.text
    explanation = r.json()["explanation"]
    assert {m["label"] for m in explanation["models"]} == set(LABELS)
    for m in explanation["models"]:
        factors = m["positive"] + m["negative"]
        assert factors, m["label"]
        assert all(np.isfinite(f["contribution"]) for f in factors)
    for label in LABELS:
        assert explanation["probabilities"][label] == pytest.approx(
            predicted.loc[account, label], abs=1e-6)
