"""Hostile and unlucky input: whatever a client sends, the answer is a 4xx problem (RFC 9457)
naming what was wrong, never a 500; limits are told, not silently applied; a retried write
happens once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.ops_store import Alert
from tests.support.service_fixtures import service_client, store_for

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(world_root, tmp_path_factory):
    with store_for("sqlite", tmp_path_factory.mktemp("hostile")) as url, \
            service_client(world_root, url, max_body_bytes=64 * 1024) as c:
        yield c


@pytest.fixture(scope="module")
def state(client):
    from serving.app import app

    return app.state.service


def is_problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and isinstance(body["detail"], str)
    return body


def raw_post(client, path: str, text: str, **headers: str):
    return client.post(path, content=text.encode("utf-8"),
                       headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize("path", ["/v1/calculate", "/v1/predict", "/v1/analyze",
                                  "/v1/createAlert", "/v1/compareSegment"])
def test_a_lone_surrogate_is_a_422_naming_the_field_not_a_500(client, path):
    text = '{"accountId": "\\ud800", "message": "\\udfff x", "value": "\\ud800"}'
    body = is_problem(raw_post(client, path, text), 422)
    assert body["errors"][0]["loc"][0] == "body"
    assert "surrogate" in body["detail"] or body["errors"][0]["field"].startswith("body")


def test_a_valid_surrogate_pair_is_ordinary_text(client):
    r = raw_post(client, "/v1/calculate", '{"accountId": "\\ud83d\\ude00"}')
    assert "is not in the warehouse" in is_problem(r, 404)["detail"]


def test_a_validation_error_echoing_any_text_still_encodes(client):
    # The refused value is echoed back escaped, whatever it holds.
    text = json.dumps({"accountId": "A00001", "asOf": "\u202e" + "x" * 1000})
    body = is_problem(raw_post(client, "/v1/calculate", text), 422)
    assert body["errors"][0]["field"] == "body.asOf" and len(body["errors"][0]["input"]) <= 200


def test_a_body_over_the_limit_is_413_before_it_is_read(client):
    big = json.dumps({"accountId": "A00001", "pad": "x" * (200 * 1024)})
    is_problem(raw_post(client, "/v1/calculate", big), 413)


def test_a_streamed_body_over_the_limit_is_413(client):
    def chunks():
        yield b'{"accountId": "A00001", "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/v1/calculate", content=chunks(),
                    headers={"content-type": "application/json"})
    is_problem(r, 413)


@pytest.mark.parametrize("query, name", [("limit=-1", "limit"), ("limit=100000000", "limit"),
                                         ("pagesize=10", "pagesize")])
def test_an_unknown_query_parameter_is_422_naming_it(client, query, name):
    body = is_problem(client.get(f"/v1/scores?{query}"), 422)
    assert body["errors"][0]["loc"] == ["query", name]
    assert "pageSize" in body["errors"][0]["msg"]


@pytest.mark.parametrize("query, name", [("pageSize=-1", "pageSize"),
                                         ("pageSize=100000000", "pageSize"),
                                         ("page=0", "page")])
def test_an_out_of_range_query_parameter_is_422_not_clamped(client, query, name):
    body = is_problem(client.get(f"/v1/scores?{query}"), 422)
    assert body["errors"][0]["loc"] == ["query", name]


def test_known_query_parameters_still_work(client):
    r = client.get("/v1/scores?pageSize=5&page=1&order=desc")
    assert r.status_code == 200 and len(r.json()["items"]) <= 5


def test_an_unknown_path_and_a_wrong_method_are_problems_too(client):
    is_problem(client.get("/v1/nowhere"), 404)
    is_problem(client.get("/v1/calculate"), 405)


def test_the_openapi_document_declares_problem_details(client):
    doc = client.get("/v1/openapi.json").json()
    responses = doc["paths"]["/calculate"]["post"]["responses"]
    assert PROBLEM in responses["422"]["content"] and PROBLEM in responses["401"]["content"]
    assert "HTTPValidationError" not in json.dumps(doc["paths"])


def open_manual_alerts(state, account: str) -> int:
    with Session(state.db) as s:
        return s.scalar(select(func.count()).select_from(Alert).where(
            Alert.account_id == account, Alert.rule == "manual", Alert.status == "open"))


def test_two_identical_create_alerts_make_one_open_alert(client, state):
    body = {"accountId": "A00071", "message": "call the sponsor", "severity": "high"}
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: client.post("/v1/createAlert", json=body), range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert open_manual_alerts(state, "A00071") == 1
    other = client.post("/v1/createAlert", json={**body, "message": "another matter"})
    assert other.json()["id"] != first.json()["id"]


def test_an_idempotency_key_replays_the_first_answer(client, state):
    body = {"accountId": "A00072", "message": "renewal at risk"}
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/v1/createAlert", json=body, headers=headers)
    resolved = client.post("/v1/resolveAlert", json={"alertId": first.json()["id"],
                                                     "resolution": "done"})
    assert resolved.status_code == 200
    # A retry of the create after the alert was resolved: the first answer, no new alert.
    again = client.post("/v1/createAlert", json=body, headers=headers)
    assert again.status_code == first.status_code and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert open_manual_alerts(state, "A00072") == 0


def test_an_idempotent_request_with_a_bad_body_is_refused_like_any_other(client):
    headers = {"Idempotency-Key": "bad-body", "content-type": "application/json"}
    is_problem(client.post("/v1/createAlert", content=b'{"accountId": "\\ud800"}',
                           headers=headers), 422)
    is_problem(client.post("/v1/createAlert", content=b"x" * (100 * 1024), headers=headers), 413)


def test_an_idempotency_key_reused_for_another_request_is_refused(client):
    headers = {"Idempotency-Key": "retry-2"}
    client.post("/v1/createAlert", json={"accountId": "A00073", "message": "a"},
                headers=headers)
    body = is_problem(client.post("/v1/createAlert", json={"accountId": "A00073",
                                                           "message": "b"}, headers=headers),
                      422)
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_idempotency_keys_belong_to_the_key_that_sent_them(client):
    reader = client.post("/v1/keys", json={"name": "idem-writer", "role": "writer"}).json()["key"]
    headers = {"Idempotency-Key": "shared-name"}
    a = client.post("/v1/createAlert", json={"accountId": "A00074", "message": "x"},
                    headers=headers)
    b = client.post("/v1/createAlert", json={"accountId": "A00074", "message": "y"},
                    headers={**headers, "X-API-Key": reader})
    assert a.status_code == b.status_code == 200 and a.json()["id"] != b.json()["id"]


def test_the_rate_limit_is_off_unless_set(state):
    assert state.settings.serving.rate_limit is None and state.rate.limit is None


def test_a_key_over_its_rate_gets_429_with_retry_after(client, state):
    from serving.guards import RateLimiter

    saved, state.rate = state.rate, RateLimiter("3/minute")
    try:
        codes = [client.post("/v1/calculate", json={"accountId": "A00001"}).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 200]
        r = client.post("/v1/calculate", json={"accountId": "A00001"})
        body = is_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1 and "3/minute" in body["detail"]
        assert client.get("/v1/health").status_code == 200  # no key, no limit
    finally:
        state.rate = saved
