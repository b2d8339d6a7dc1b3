"""Bring your own table: one flat file in, a cross-validated (or time-split), calibrated and
registered model out, through the same code as the warehouse models; bad input is named."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from healthscore.cli import app
from healthscore.settings import load_settings
from scoring.bundle import load_bundle
from tests.support.suite_settings import write_config
from training.table import TableError, TableSpec, load_table, prepare_table, train_table

pytestmark = pytest.mark.xdist_group("train-table")

CHURN_CSV = Path(__file__).resolve().parents[1] / "data" / "saas_churn_pysurvival" / "churn.csv"


def _settings(tmp_path):
    return load_settings(paths={
        "mlflow_uri": f"sqlite:///{tmp_path}/mlruns.db", "mlflow_artifacts": str(tmp_path / "mr"),
        "models_dir": str(tmp_path / "models")})


@pytest.fixture(scope="module")
def churn_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table")
    spec = TableSpec(CHURN_CSV, "churned", drop=("months_active",))
    return tmp, train_table(_settings(tmp), spec, register=False)


def test_pysurvival_churn_without_months_active_reaches_cv_auc_091(churn_job):
    _, job = churn_job
    m = job.report["models"]["churned"]
    assert m["backtest"]["summary"]["model"]["roc_auc"]["mean"] >= 0.91
    assert len(m["backtest"]["folds"]) == 5
    assert "stratified 5-fold" in m["split"]["scheme"]
    assert m["test"]["model"]["rows"] == 2000  # out-of-fold: every row predicted once
    assert m["test"]["model"]["ece"] < 0.05
    assert "logistic" in m["test"]


def test_the_table_model_is_saved_as_a_bundle_serving_can_load(churn_job, tmp_path):
    tmp, job = churn_job
    where = job.bundle_dirs["churned"]
    bundle = load_bundle(where, feature_set_version=job.report["run"]["feature_set_version"])
    rows = pd.read_csv(CHURN_CSV).head(5)
    p = bundle.predict_proba(rows)
    assert p.shape == (5,) and ((p > 0) & (p < 1)).all()
    assert "months_active" not in bundle.features
    assert (where / "report.md").exists()


def test_a_leaked_column_is_reported_by_the_leakage_guard(tmp_path):
    frame = pd.read_csv(CHURN_CSV).drop(columns=["months_active"])
    rng = np.random.default_rng(0)
    frame["cancel_requested"] = np.where(frame["churned"] == 1, 1.0, 0.0)
    frame.loc[rng.random(len(frame)) < 0.005, "cancel_requested"] = 1.0  # a little noise
    path = tmp_path / "leaky.csv"
    frame.to_csv(path, index=False)
    job = train_table(_settings(tmp_path), TableSpec(path, "churned"), register=False)
    assert [x["feature"] for x in job.report["models"]["churned"]["leakage"]] == \
        ["cancel_requested"]
    assert any("cancel_requested" in w and "leakage" in w for w in job.report["warnings"])


def test_with_a_time_column_the_split_is_chronological(tmp_path):
    frame = pd.read_csv(CHURN_CSV).drop(columns=["months_active"])
    frame["signup"] = pd.date_range("2022-01-01", periods=len(frame), freq="D")
    path = tmp_path / "timed.parquet"
    frame.to_parquet(path)
    job = train_table(_settings(tmp_path), TableSpec(path, "churned", time="signup"),
                      register=False)
    m = job.report["models"]["churned"]
    assert m["split"]["rows"] == {"train": 1200, "valid": 200, "calib": 200, "test": 400}
    assert m["test"]["model"]["rows"] == 400
    assert m["test"]["model"]["roc_auc"] > 0.85
    assert "signup" not in job.results["churned"].bundle.features


def test_a_label_that_is_not_binary_names_the_file_row_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1, 2, 3], "churned": ["yes", "no", "maybe"]}).to_csv(path, index=False)
    with pytest.raises(TableError, match=r"bad.csv: row 4 .*column 'churned'.*'maybe'"):
        prepare_table(load_table(path), TableSpec(path, "churned"))


def test_an_unknown_column_is_named_with_the_option(tmp_path):
    spec = TableSpec(CHURN_CSV, "churned", drop=("no_such_column",))
    with pytest.raises(TableError, match="--drop names column 'no_such_column'"):
        prepare_table(load_table(CHURN_CSV), spec)


def test_train_command_on_a_table_registers_it_and_prints_json(tmp_path):
    config = write_config(
        tmp_path / "hs.yaml", training={"cv_folds": 2},
        paths={"mlflow_uri": f"sqlite:///{tmp_path}/mlruns.db",
               "mlflow_artifacts": str(tmp_path / "mr"), "models_dir": str(tmp_path / "models")})
    result = CliRunner().invoke(app, ["--config", str(config), "train", "--table",
                                      str(CHURN_CSV), "--label", "churned", "--drop",
                                      "months_active", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    champions = [r for r in payload["metrics"] if r["alias"] == "champion"]
    assert len(champions) == 1 and champions[0]["roc_auc"] > 0.85
    assert payload["promotions"]["churned"]["model_name"] == "healthscore-table-churned"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    assert str(client.get_model_version_by_alias("healthscore-table-churned",
                                                 "champion").version) == "1"


def test_train_command_refuses_table_options_without_a_table():
    result = CliRunner().invoke(app, ["train", "--label", "churned"])
    assert result.exit_code != 0
    assert "--table" in result.output
