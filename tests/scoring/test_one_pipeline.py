"""One way a score is made: the daily job, `/calculate`, `/predict`, `/analyze` and
`healthscore explain` give the same scores and probabilities for the same accounts and date,
because they all call `scoring.pipeline.score_accounts`; a churned account gets its status and
no probability everywhere; with no date, everything is as of the warehouse's one "today".
"""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from features.contract.warehouse import today
from healthscore.cli import app
from tests.support.service_fixtures import service_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('one') / 'scores.db'}"


@pytest.fixture(scope="module")
def config(world_root, store_url, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump({"paths": {
        "warehouse": str(world_root / "warehouse.duckdb"), "store_url": store_url,
        "models_dir": str(world_root / "models")}}))
    return path


@pytest.fixture(scope="module")
def warehouse_today(world_root):
    con = duckdb.connect(str(world_root / "warehouse.duckdb"), read_only=True)
    try:
        return today(con)
    finally:
        con.close()


def cli(config, *args: str) -> str:
    got = CliRunner().invoke(app, ["--config", str(config), *args])
    assert got.exit_code == 0, got.output + repr(got.exception)
    return got.output


@pytest.fixture(scope="module")
def daily(config, warehouse_today):
    """The daily job, as cron runs it: no date."""
    return cli(config, "score")


@pytest.fixture(scope="module")
def client(world_root, store_url, daily):
    with service_client(world_root, store_url) as c:
        yield c


def stored_scores(store_url):
    from serving.store import open_store

    with open_store(store_url) as store:
        return store.load_scores().set_index("account_id")


def explain_json(config, account: str, as_of) -> dict:
    return json.loads(cli(config, "explain", account, "--as-of", str(as_of), "--format", "json"))


def test_the_daily_job_needs_no_date_and_says_which_it_used(daily, store_url, warehouse_today):
    assert f"as of {warehouse_today} (the warehouse's today)" in daily
    stored = stored_scores(store_url)
    assert len(stored) and set(stored["as_of"].dt.date) == {warehouse_today}


def test_every_path_gives_the_same_score_and_probabilities(client, config, store_url,
                                                           warehouse_today):
    stored = stored_scores(store_url)
    for account in sorted(stored.index)[:3]:
        calc = client.post("/v1/calculate", json={"accountId": account}).json()
        pred = client.post("/v1/predict", json={"accountId": account}).json()
        analysis = client.post("/v1/analyze", json={"accountId": account}).json()
        explained = explain_json(config, account, warehouse_today)
        assert calc["metadata"]["asOf"] == pred["asOf"] == str(warehouse_today)
        assert calc["automaticScore"] == pytest.approx(stored.loc[account, "score"])
        assert analysis["healthScore"]["automaticScore"] == pytest.approx(calc["automaticScore"])
        assert explained["score"] == pytest.approx(calc["automaticScore"])
        assert pred["probabilities"] and set(pred["probabilities"]) == set(calc["probabilities"])
        for probs in (calc["probabilities"], analysis["explanation"]["probabilities"],
                      explained["probabilities"]):
            assert probs == pytest.approx(pred["probabilities"], abs=1e-9)


def test_a_past_date_is_scored_the_same_by_the_api_and_the_cli(client, config, store_url,
                                                               warehouse_today):

    when = warehouse_today - timedelta(days=40)
    account = sorted(stored_scores(store_url).index)[0]
    calc = client.post("/v1/calculate", json={"accountId": account, "asOf": str(when)}).json()
    explained = explain_json(config, account, when)
    assert explained["as_of"] == calc["metadata"]["asOf"] == str(when)
    assert explained["score"] == pytest.approx(calc["automaticScore"])
    assert explained["probabilities"] == pytest.approx(calc["probabilities"], abs=1e-9)


def churned_account(world_root, as_of):
    con = duckdb.connect(str(world_root / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("select account_id from churn_events where churned_at < ? "
                           "order by churned_at limit 1", [as_of]).fetchone()[0]
    finally:
        con.close()


def test_a_churned_account_gets_its_status_and_no_probability(client, config, world_root,
                                                              warehouse_today):
    account = churned_account(world_root, warehouse_today)
    pred = client.post("/v1/predict", json={"accountId": account}).json()
    assert pred["accountStatus"] == "churned"
    assert pred["probabilities"] == {} and pred["churnRisk"] is None and not pred["available"]
    assert "churned on" in pred["note"] and set(pred["trajectory"].values()) == {None}
    calc = client.post("/v1/calculate", json={"accountId": account}).json()
    assert calc["accountStatus"] == "churned" and calc["status"] == "churned"
    assert calc["probabilities"] == {} and "churned on" in calc["probabilitiesNote"]
    analysis = client.post("/v1/analyze", json={"accountId": account}).json()
    assert analysis["explanation"]["probabilities"] == {}
    assert analysis["explanation"]["models"] == []
    explained = explain_json(config, account, warehouse_today)
    assert explained["account_status"] == "churned" and explained["probabilities"] == {}
    assert "churned on" in explained["probabilities_note"]
    markdown = cli(config, "explain", account, "--as-of", str(warehouse_today))
    assert "No probabilities: the account churned on" in markdown


def test_an_account_before_it_started_is_told_so(client, world_root):
    con = duckdb.connect(str(world_root / "warehouse.duckdb"), read_only=True)
    account, created = con.execute(
        "select account_id, created_at from accounts order by created_at desc limit 1").fetchone()
    con.close()
    created -= timedelta(days=1)  # the day before its signup day (on that day it is active)
    pred = client.post("/v1/predict", json={"accountId": account,
                                            "asOf": str(created.date())}).json()
    assert pred["accountStatus"] == "not-started" and pred["probabilities"] == {}
    assert "created on" in pred["note"]
    calc = client.post("/v1/calculate", json={"accountId": account,
                                              "asOf": str(created.date())}).json()
    assert calc["accountStatus"] == "not-started" and calc["score"] is None
    assert calc["grade"] is None and calc["metrics"] == []
    analysis = client.post("/v1/analyze", json={"accountId": account,
                                                "asOf": str(created.date())}).json()
    assert analysis["explanation"] is None


def predict_file(config, tmp_path, *args: str):
    import pandas as pd

    out = tmp_path / "predictions.parquet"
    cli(config, "predict", "--out", str(out), *args)
    return pd.read_parquet(out).set_index("account_id")


def test_predict_writes_every_active_account_with_the_apis_numbers(client, config, tmp_path,
                                                                  daily, store_url,
                                                                  warehouse_today):
    import re

    table = predict_file(config, tmp_path)
    portfolio = int(re.search(r"\((\d+) accounts", daily).group(1))
    assert len(table) == portfolio and set(table.index) <= set(stored_scores(store_url).index)
    assert set(table["account_status"]) == {"active"}
    assert set(table["as_of"].dt.date) == {warehouse_today}
    labels = [f"{t}_{h}d" for t in ("churn", "expansion") for h in (30, 60, 90)]
    assert list(table.columns[-7:]) == [*labels, "probabilities_note"]
    for account in sorted(table.index)[:3]:
        pred = client.post("/v1/predict", json={"accountId": account}).json()
        calc = client.post("/v1/calculate", json={"accountId": account}).json()
        row = table.loc[account]
        assert row["score"] == pytest.approx(calc["automaticScore"])
        assert row["band"] == calc["band"]
        assert row[labels].to_dict() == pytest.approx(pred["probabilities"], abs=1e-9)


def test_predict_at_a_past_date_matches_the_api_at_that_date(client, config, tmp_path,
                                                             warehouse_today):
    from datetime import timedelta

    when = warehouse_today - timedelta(days=40)
    table = predict_file(config, tmp_path, "--as-of", str(when))
    account = sorted(table.index)[0]
    pred = client.post("/v1/predict", json={"accountId": account, "asOf": str(when)}).json()
    assert pred["asOf"] == str(when)
    assert table.loc[account, pred["probabilities"].keys()].to_dict() == pytest.approx(
        pred["probabilities"], abs=1e-9)


def test_predict_writes_csv_to_standard_output_and_refuses_other_formats(config, tmp_path):
    import io

    import pandas as pd

    got = CliRunner().invoke(app, ["--config", str(config), "predict"])
    assert got.exit_code == 0, got.output
    text = got.stdout[got.stdout.index("account_id,"):]
    assert len(pd.read_csv(io.StringIO(text))) > 0
    bad = CliRunner().invoke(app, ["--config", str(config), "predict", "--out",
                                   str(tmp_path / "p.xlsx")])
    assert bad.exit_code == 2 and ".parquet or .csv" in bad.output
