"""The portfolio resources through the API (reader role), on the service tests' generated world:
value tiers and classes, RFM, lifecycle stages, an account's journey as the daily job's pass
records it, and the stored usage anomalies with their alerts."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from scoring.anomalies import ANOMALY_COLUMNS
from serving.portfolio import record_portfolio
from tests.support.service_fixtures import BACKENDS, service_client, state_of_client, store_for


@pytest.fixture(scope="module", params=BACKENDS)
def client(request, world_root, tmp_path_factory):
    with store_for(request.param, tmp_path_factory.mktemp("portfolio")) as url, \
            service_client(world_root, url, request_timeout_seconds=120) as c:
        # Another date is scored on demand (the whole portfolio): on a loaded machine that
        # takes longer than the default 10 s request timeout.
        yield c


@pytest.fixture(scope="module")
def reader(client) -> dict[str, str]:
    made = client.post("/v1/keys", json={"name": "portfolio-reader", "role": "reader"})
    assert made.status_code == 201
    return {"X-API-Key": made.json()["key"]}


def test_every_portfolio_route_needs_a_key(client):
    for path in ("/v1/portfolio/value", "/v1/portfolio/rfm", "/v1/portfolio/lifecycle",
                 "/v1/accounts/A00010/lifecycle", "/v1/anomalies"):
        assert client.get(path, headers={"X-API-Key": ""}).status_code == 401, path


def test_webhooks_subscribe_to_the_portfolio_events(client):
    made = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                             "eventTypes": ["lifecycle.changed",
                                                            "anomaly.detected"]})
    assert made.status_code == 201, made.text
    assert made.json()["eventTypes"] == ["lifecycle.changed", "anomaly.detected"]


def test_value_lists_tiers_and_classes_with_reasons(client, reader):
    state = state_of_client()
    active = len(state.portfolio.active())
    got = client.get("/v1/portfolio/value", headers=reader, params={"limit": 1000}).json()
    assert got["total"] == active == len(got["items"]) == sum(got["tiers"].values())
    assert set(got["tiers"]) <= {"Strategic", "High Value", "Standard"}
    scores = [i["valueScore"] for i in got["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in got["items"]:
        assert item["tierReason"].startswith(item["tier"])
        assert item["segmentReason"]
        assert all(c["reason"] for c in item["classes"])
    tier = got["items"][0]["tier"]
    only = client.get("/v1/portfolio/value", headers=reader, params={"tier": tier}).json()
    assert only["total"] == got["tiers"][tier]
    assert {i["tier"] for i in only["items"]} == {tier}
    page = client.get("/v1/portfolio/value", headers=reader,
                      params={"limit": 5, "offset": 5}).json()
    assert [i["accountId"] for i in page["items"]] == \
        [i["accountId"] for i in got["items"][5:10]]
    assert client.get("/v1/portfolio/value", headers=reader,
                      params={"tier": "Gold"}).status_code == 422


def test_rfm_scores_on_quintiles_with_segments(client, reader):
    got = client.get("/v1/portfolio/rfm", headers=reader, params={"limit": 1000}).json()
    assert set(got["quintiles"]) == {"recency", "frequency", "monetary"}
    assert all(len(v) == 4 for v in got["quintiles"].values())
    assert sum(got["segments"].values()) == got["total"] == len(got["items"])
    for item in got["items"]:
        assert item["rfm"] == f"{item['r']}{item['f']}{item['m']}"
        assert item["reason"].startswith(item["segment"])
    champions = client.get("/v1/portfolio/rfm", headers=reader,
                           params={"segment": "Champions"}).json()
    assert {i["segment"] for i in champions["items"]} <= {"Champions"}


def test_lifecycle_stages_and_an_accounts_journey(client, reader):
    state = state_of_client()
    got = client.get("/v1/portfolio/lifecycle", headers=reader, params={"limit": 1000}).json()
    assert set(got["stages"]) <= {"Onboarding", "Growth", "Mature", "At-Risk", "Renewal"}
    assert sum(got["stages"].values()) == got["total"]
    account = got["items"][0]["accountId"]
    before = client.get(f"/v1/accounts/{account}/lifecycle", headers=reader).json()
    assert before["current"]["stage"] == got["items"][0]["stage"] and before["journey"] == []
    # The daily job's portfolio pass records the journey (here for the service's today).
    frame = state.portfolio
    empty = pd.DataFrame(columns=list(ANOMALY_COLUMNS))
    record_portfolio(state.db, frame, None, state.settings.portfolio,
                     idempotency=f"daily:{frame.as_of}", anomalies=empty)
    after = client.get(f"/v1/accounts/{account}/lifecycle", headers=reader).json()
    assert [e["stage"] for e in after["journey"]] == [before["current"]["stage"]]
    assert after["journey"][0]["fromStage"] is None and after["journey"][0]["cause"]
    assert client.get("/v1/accounts/NOPE/lifecycle", headers=reader).status_code == 404


def test_stored_anomalies_are_listed_with_their_evidence(client, reader):
    state = state_of_client()
    frame = state.portfolio
    account = frame.active().account_ids[0]
    found = pd.DataFrame([{
        "account_id": account, "metric": "events",
        "window_start": frame.as_of - timedelta(days=7),
        "window_end": frame.as_of - timedelta(days=1), "expected": 100.0, "observed": 5.0,
        "change": -0.95, "z": -8.0, "direction": "drop", "common_factor": 1.0,
        "daily_expected": [20.0] * 5 + [0.0] * 2, "daily_observed": [1.0] * 5 + [0.0] * 2}],
        columns=list(ANOMALY_COLUMNS))
    record_portfolio(state.db, frame, None, state.settings.portfolio,
                     idempotency=f"daily:{frame.as_of}", anomalies=found)
    got = client.get("/v1/anomalies", headers=reader, params={"accountId": account}).json()
    assert len(got) == 1
    one = got[0]
    assert (one["expected"], one["observed"], one["direction"]) == (100.0, 5.0, "drop")
    assert one["windowEnd"] == str(frame.as_of - timedelta(days=1))
    assert one["evidence"]["dailyObserved"][0] == 1.0 and one["notified"] is True
    alerts = client.get("/v1/alerts", headers=reader, params={"accountId": account}).json()
    assert any(a["id"] == one["alertId"] and a["rule"] == "anomaly:events" for a in alerts)
    assert client.get("/v1/anomalies", headers=reader,
                      params={"metric": "active_users"}).json() == []


def test_another_date_and_a_date_without_customers(client, reader):
    got = client.get("/v1/portfolio/value", headers=reader, params={"asOf": "2024-12-01"})
    assert got.status_code == 200 and got.json()["asOf"] == "2024-12-01"
    none = client.get("/v1/portfolio/rfm", headers=reader, params={"asOf": "2000-01-01"})
    assert none.status_code == 200 and none.json()["total"] == 0
    empty = client.get("/v1/portfolio/value", headers=reader,
                       params={"asOf": "2000-01-01", "segment": "Strategic"})
    assert empty.status_code == 200 and empty.json()["items"] == []
    far = client.get("/v1/portfolio/lifecycle", headers=reader, params={"asOf": "9999-01-01"})
    assert far.status_code == 422 and far.json()["errors"][0]["loc"] == ["query", "asOf"]
