"""The HealthScore API through `HealthScoreService.to_asgi()` (no server process): every endpoint,
its error cases, and persistence on SQLite and PostgreSQL (one service per backend per module;
tests use their own accounts so they do not depend on each other's writes).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from features.build import build_features
from features.contract.warehouse import connect, connected_tables
from features.settings import FeatureConfig
from scoring.health import load_rules, score_frame
from serving.ops_store import AuditEntry, Event
from serving.store import HealthScoreRecord
from tests.support.service_fixtures import ADMIN_KEY, BACKENDS, service_client, store_for


@pytest.fixture(scope="module", params=BACKENDS)
def client(request, world_root, tmp_path_factory):
    with store_for(request.param, tmp_path_factory.mktemp("store")) as url, \
            service_client(world_root, url) as c:
        yield c


@pytest.fixture(scope="module")
def state(client):
    from serving.app import app

    return app.state.service


def events_of(state, account_id: str) -> list[str]:
    with Session(state.db) as s:
        return list(s.scalars(select(Event.type).where(Event.account_id == account_id)
                              .order_by(Event.id)))


def stored(state, account_id: str) -> list[tuple]:
    with Session(state.db) as s:
        return s.execute(select(HealthScoreRecord.as_of, HealthScoreRecord.score,
                                HealthScoreRecord.config_version)
                         .where(HealthScoreRecord.account_id == account_id)).all()


def account_rows(world_root, account_id: str, new_id: str) -> dict[str, list[dict]]:
    """Every warehouse row of an account, renamed, as a JSON activity payload."""
    con = duckdb.connect(str(world_root / "warehouse.duckdb"), read_only=True)
    out = {}
    for table in sorted(connected_tables(con)):
        frame = con.execute(f'select * from "{table}" where account_id = ?', [account_id]
                            ).fetchdf()
        frame["account_id"] = new_id
        text = frame.to_json(orient="records", date_format="iso")
        out[table] = json.loads(text)
    con.close()
    return out


# --- calculate ------------------------------------------------------------------------------------

def test_calculate_returns_the_full_health_score_of_a_warehouse_account(client, state):
    r = client.post("/v1/calculate", json={"accountId": "A00010"})
    assert r.status_code == 200, r.text
    hs = r.json()
    assert hs["id"] == "A00010" and hs["customer"]
    assert 0 <= hs["score"] <= 100 and hs["score"] == hs["automaticScore"]
    assert hs["grade"] and hs["band"] and hs["status"] and hs["colour"]
    assert set(hs["dimensions"]) >= {"engagement", "adoption", "satisfaction", "support",
                                     "usage", "value"}
    assert hs["metrics"] and all({"name", "weight", "share"} <= set(m) for m in hs["metrics"])
    assert sum(m["share"] for m in hs["metrics"]) == pytest.approx(1.0, abs=1e-6)
    assert set(hs["probabilities"]) == {f"{t}_{h}d" for t in ("churn", "expansion")
                                        for h in (30, 60, 90)}
    assert hs["churnRisk"] == pytest.approx(100 * hs["probabilities"]["churn_90d"], abs=0.01)
    assert hs["expansionOpportunity"] == pytest.approx(
        100 * hs["probabilities"]["expansion_90d"], abs=0.01)
    assert hs["metadata"]["configVersion"] == state.rules.config_version
    assert hs["metadata"]["asOf"] == str(state.default_as_of)
    assert hs["daysSinceActive"] is not None and hs["lastActive"]
    assert hs["calculated"]
    # Stored once, with the rules version it used, and the `calculated` event fired with it.
    assert stored(state, "A00010") == [(state.default_as_of, pytest.approx(hs["score"]),
                                         state.rules.config_version)]
    assert "calculated" in events_of(state, "A00010")


def test_calculate_is_the_batch_scoring_function(client, world_root):
    """Same features function, same score_frame: the service adds no rule of its own."""
    as_of = "2024-12-01"
    got = client.post("/v1/calculate", json={"accountId": "A00011", "asOf": as_of}).json()
    con = connect(world_root / "warehouse.duckdb", read_only=True)
    ents = pd.DataFrame({"account_id": ["A00011", "A00011"],
                         "as_of": pd.to_datetime([as_of, "2024-11-24"])})
    feats = build_features(con, ents, FeatureConfig())
    rules = load_rules()
    prev = score_frame(feats.iloc[1:], connected_tables(con), rules)
    want = score_frame(feats.iloc[:1], connected_tables(con), rules, prev)
    con.close()
    assert got["automaticScore"] == pytest.approx(float(want["score"].iloc[0]))
    assert got["previousScore"] == pytest.approx(float(prev["score"].iloc[0]))
    assert got["grade"] == want["grade"].iloc[0]


def test_calculate_twice_stores_once_and_fires_calculated_once(client, state):
    client.post("/v1/calculate", json={"accountId": "A00012"})
    client.post("/v1/calculate", json={"accountId": "A00012"})
    assert len(stored(state, "A00012")) == 1
    assert events_of(state, "A00012").count("calculated") == 1


def test_recalculate_rebuilds_and_stores_again(client, state):
    a = client.post("/v1/calculate", json={"accountId": "A00013"}).json()
    b = client.post("/v1/recalculate", json={"accountId": "A00013"}).json()
    assert b["automaticScore"] == pytest.approx(a["automaticScore"])
    assert events_of(state, "A00013").count("calculated") == 2


def test_an_unknown_account_is_404(client):
    r = client.post("/v1/calculate", json={"accountId": "NOPE-1"})
    assert r.status_code == 404
    assert "NOPE-1" in r.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({}, "accountId"),
    ({"accountId": ""}, "accountId"),
    ({"accountId": "A00001", "asOf": "yesterday"}, "asOf"),
    ({"accountId": "A00001", "colour": "red"}, "colour"),
    ({"accountId": "A00001", "activity": {"bogus_table": []}}, "activity"),
])
def test_a_malformed_payload_is_422_naming_the_field(client, body, field):
    r = client.post("/v1/calculate", json=body)
    assert r.status_code == 422
    assert any(field in map(str, e["loc"]) for e in r.json()["errors"]), r.text


def test_an_unknown_account_is_scored_from_its_raw_activity_like_the_warehouse_would(
        client, state, world_root):
    payload = account_rows(world_root, "A00014", "NEWCO-14")
    as_of = str(state.default_as_of)
    fresh = client.post("/v1/calculate", json={"accountId": "NEWCO-14", "asOf": as_of,
                                               "activity": payload})
    assert fresh.status_code == 200, fresh.text
    known = client.post("/v1/calculate", json={"accountId": "A00014", "asOf": as_of}).json()
    assert fresh.json()["automaticScore"] == pytest.approx(known["automaticScore"])
    assert fresh.json()["probabilities"] == pytest.approx(known["probabilities"])
    assert fresh.json()["metadata"]["source"] == "payload"


def test_a_bad_activity_row_is_422_naming_table_row_and_column_and_writes_nothing(
        client, state, world_root):
    payload = account_rows(world_root, "A00015", "NEWCO-15")
    payload["usage_events"][3]["ts"] = "not a time"
    r = client.post("/v1/calculate", json={"accountId": "NEWCO-15", "activity": payload})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "activity", "usage_events", 3, "ts"]
    del payload["usage_events"][3]["ts"]
    r = client.post("/v1/calculate", json={"accountId": "NEWCO-15", "activity": payload})
    assert r.json()["errors"][0]["loc"] == ["body", "activity", "usage_events", 3, "ts"]
    assert stored(state, "NEWCO-15") == [] and events_of(state, "NEWCO-15") == []


# --- predict / analyze / summary ------------------------------------------------------------------

def test_predict_gives_monotone_probabilities_and_a_trajectory(client):
    p = client.post("/v1/predict", json={"accountId": "A00016"}).json()
    assert p["available"]
    for target in ("churn", "expansion"):
        ps = [p["probabilities"][f"{target}_{h}d"] for h in (30, 60, 90)]
        assert all(0 <= x <= 1 for x in ps) and ps == sorted(ps)
    assert set(p["trajectory"]) == {"30d", "60d", "90d"}
    assert all(0 <= v <= 100 for v in p["trajectory"].values())


def test_analyze_returns_score_prediction_and_the_one_explanation(client, state):
    account = state.portfolio.account_ids[16]
    a = client.post("/v1/analyze", json={"accountId": account, "topK": 3}).json()
    assert a["healthScore"]["id"] == account and a["healthScore"]["accountStatus"] == "active"
    assert len(a["ruleFactors"]) == 3
    # The same document as `healthscore explain --format json`: every model, its factors in
    # log-odds, strongest first, at most topK a side.
    explanation = a["explanation"]
    assert explanation["account_id"] == account
    assert {m["label"] for m in explanation["models"]} == set(state.labels)
    for m in explanation["models"]:
        for side in ("positive", "negative"):
            contribs = [abs(f["contribution"]) for f in m[side]]
            assert len(contribs) <= 3 and contribs == sorted(contribs, reverse=True)
    assert explanation["probabilities"] == pytest.approx(a["prediction"]["probabilities"])


def test_summary_is_markdown(client):
    r = client.get("/v1/accounts/A00017/summary")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("## Health: ") and "### Risk Flags" in r.text
    assert client.get("/v1/accounts/NOPE/summary").status_code == 404


# --- overrides ------------------------------------------------------------------------------------

def test_update_sets_a_manual_score_and_keeps_the_automatic_one(client, state):
    auto = client.post("/v1/calculate", json={"accountId": "A00020"}).json()["automaticScore"]
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    r = client.post("/v1/update", json={"accountId": "A00020", "score": 12.5, "reason":
                                        "exec sponsor left", "author": "ana",
                                        "expiresAt": expires})
    assert r.status_code == 200, r.text
    hs = r.json()
    assert hs["score"] == 12.5 and hs["automaticScore"] == pytest.approx(auto)
    assert hs["band"] == "At Risk" and hs["override"]["reason"] == "exec sponsor left"
    # Later reads see the override; the history keeps it; it is audited and evented.
    again = client.post("/v1/calculate", json={"accountId": "A00020"}).json()
    assert again["score"] == 12.5
    hist = client.get("/v1/accounts/A00020/history").json()
    assert hist["overrides"][0]["author"] == "ana"
    assert "updated" in events_of(state, "A00020")
    with Session(state.db) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "score.override", AuditEntry.target == "A00020")) == 1


def test_an_override_in_the_past_or_out_of_range_is_refused(client):
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = client.post("/v1/update", json={"accountId": "A00021", "score": 50, "reason": "why not",
                                        "author": "x", "expiresAt": past})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "expiresAt"]
    r = client.post("/v1/update", json={"accountId": "A00021", "score": 101, "reason": "why",
                                        "author": "x", "expiresAt": "2099-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "score"]


# --- alerts ---------------------------------------------------------------------------------------

def test_create_and_resolve_an_alert_by_hand(client, state):
    r = client.post("/v1/createAlert", json={"accountId": "A00040", "message": "call them",
                                             "severity": "high"})
    assert r.status_code == 200, r.text
    alert = r.json()
    assert alert["status"] == "open" and alert["rule"] == "manual"
    listed = client.get("/v1/alerts", params={"accountId": "A00040", "status": "open"}).json()
    assert alert["id"] in [a["id"] for a in listed]
    done = client.post("/v1/resolveAlert", json={"alertId": alert["id"],
                                                 "resolution": "called"}).json()
    assert done["status"] == "resolved" and done["resolution"] == "called"
    assert client.post("/v1/resolveAlert", json={"alertId": alert["id"]}).status_code == 409
    assert client.post("/v1/resolveAlert", json={"alertId": 999999}).status_code == 404
    assert client.post("/v1/createAlert", json={"accountId": "NOPE", "message": "x"}
                       ).status_code == 404
    kinds = events_of(state, "A00040")
    assert kinds.count("Alert.created") == 1 and kinds.count("Alert.resolved") == 1


# --- reading --------------------------------------------------------------------------------------

def test_compare_segment_against_the_rest(client):
    r = client.post("/v1/compareSegment", json={"field": "segment", "value": "enterprise"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["segment"]["accounts"] > 0 and c["rest"]["accounts"] > 0
    assert sum(c["segment"]["bands"].values()) == c["segment"]["accounts"]
    assert sum(c["segment"]["distribution"].values()) <= c["segment"]["accounts"]
    assert c["topFactors"] and {"dimension", "difference"} <= set(c["topFactors"][0])
    assert client.post("/v1/compareSegment", json={"value": "martians"}).status_code == 404


def test_list_history_export_and_report_read_the_stored_scores(client, state):
    for a in ("A00050", "A00051", "A00052"):
        client.post("/v1/calculate", json={"accountId": a})
    page = client.get("/v1/scores", params={"sort": "score", "order": "desc",
                                            "pageSize": 2}).json()
    assert page["total"] >= 3 and len(page["items"]) == 2
    assert page["items"][0]["score"] >= page["items"][1]["score"]
    page2 = client.get("/v1/scores", params={"sort": "score", "order": "desc", "pageSize": 2,
                                             "page": 2}).json()
    assert page2["items"][0]["score"] <= page["items"][1]["score"]
    band = page["items"][0]["band"]
    only = client.get("/v1/scores", params={"band": band}).json()
    assert only["items"] and all(i["band"] == band for i in only["items"])
    assert client.get("/v1/scores", params={"pageSize": 0}).status_code == 422

    hist = client.get("/v1/accounts/A00050/history").json()
    assert [s["asOf"] for s in hist["scores"]] == [str(state.default_as_of)]

    day = str(state.default_as_of)
    frames = {}
    for fmt in ("csv", "json", "parquet"):
        r = client.get("/v1/exportScores", params={"format": fmt, "start": day, "end": day})
        assert r.status_code == 200
        frames[fmt] = (pd.read_csv(io.BytesIO(r.content)) if fmt == "csv" else
                       pd.DataFrame(r.json()) if fmt == "json" else
                       pd.read_parquet(io.BytesIO(r.content)))
    for frame in frames.values():
        assert {"A00050", "A00051", "A00052"} <= set(frame["account_id"])
        assert len(frame) == len(frames["csv"])
    np.testing.assert_allclose(frames["json"]["score"].astype(float),
                               frames["parquet"]["score"].astype(float))
    assert client.get("/v1/exportScores", params={"format": "xml"}).status_code == 422

    rep = client.post("/v1/generateReport", json={"start": day, "end": day}).json()
    assert rep["scoredAccounts"] == len(frames["csv"])
    assert sum(rep["bands"].values()) == rep["scoredAccounts"]
    assert rep["atRisk"] >= 0 and rep["champions"] >= 0
    assert client.post("/v1/generateReport", json={"start": day, "end": "2000-01-01"}
                       ).status_code == 422


def test_the_openapi_document_lists_every_endpoint(client):
    doc = client.get("/v1/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/calculate", "/recalculate", "/update", "/setWeights", "/setThresholds",
            "/createAlert", "/resolveAlert", "/analyze", "/predict", "/compareSegment",
            "/generateReport", "/exportScores", "/scores", "/accounts/{account_id}/summary",
            "/accounts/{account_id}/history", "/webhooks", "/keys"} <= paths
    assert "HealthScore" in doc["components"]["schemas"]


def test_the_admin_key_bootstrapped_from_the_environment_works(client):
    assert client.get("/v1/keys", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
