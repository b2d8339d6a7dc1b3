"""Access control: reader / writer / admin keys on every endpoint, stored hashed, clear 401/403
messages, revocation, and no secret in the logs.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.auth import hash_key
from serving.ops_store import ApiKey
from tests.support.service_fixtures import ADMIN_KEY, BACKENDS, service_client, store_for

READS = [("post", "/v1/calculate", {"accountId": "A00060"}),
         ("post", "/v1/predict", {"accountId": "A00060"}),
         ("post", "/v1/analyze", {"accountId": "A00060"}),
         ("get", "/v1/scores", None),
         ("get", "/v1/alerts", None),
         ("get", "/v1/accounts/A00060/summary", None),
         ("get", "/v1/accounts/A00060/history", None),
         ("get", "/v1/exportScores", None),
         ("get", "/v1/config/versions", None),
         ("post", "/v1/compareSegment", {"value": "smb"}),
         ("post", "/v1/generateReport", {"start": "2025-01-01", "end": "2025-12-31"})]
WRITES = [("post", "/v1/recalculate", {"accountId": "A00060"}),
          ("post", "/v1/update", {"accountId": "A00060", "score": 50, "reason": "call",
                                  "author": "x", "expiresAt": "2099-01-01T00:00:00Z"}),
          ("post", "/v1/createAlert", {"accountId": "A00060", "message": "m"}),
          ("post", "/v1/resolveAlert", {"alertId": 999999})]
ADMIN = [("get", "/v1/webhooks", None), ("get", "/v1/keys", None),
         ("post", "/v1/webhooks", {"url": "http://127.0.0.1:9/h"}),
         ("post", "/v1/keys", {"name": "k", "role": "reader"})]


@pytest.fixture(scope="module", params=BACKENDS)
def client(request, world_root, tmp_path_factory):
    with store_for(request.param, tmp_path_factory.mktemp("auth")) as url, \
            service_client(world_root, url) as c:
        yield c


@pytest.fixture(scope="module")
def keys(client):
    out = {}
    for role in ("reader", "writer", "admin"):
        r = client.post("/v1/keys", json={"name": f"{role}-key", "role": role})
        assert r.status_code == 201
        out[role] = r.json()["key"]
    return out


def call(client, method, path, body, key):
    headers = {"X-API-Key": key} if key is not None else {"X-API-Key": ""}
    if method == "get":
        return client.get(path, headers=headers)
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body", READS + WRITES + ADMIN)
def test_every_endpoint_needs_a_key(client, method, path, body):
    r = call(client, method, path, body, None)
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["detail"]
    r = call(client, method, path, body, "hs_not_a_real_key")
    assert r.status_code == 401 and "invalid" in r.json()["detail"]


@pytest.mark.parametrize("role, allowed", [("reader", READS), ("writer", READS + WRITES),
                                           ("admin", READS + WRITES + ADMIN)])
def test_each_role_reaches_exactly_its_endpoints(client, keys, role, allowed):
    for method, path, body in READS + WRITES + ADMIN:
        r = call(client, method, path, body, keys[role])
        if (method, path, body) in allowed:
            assert r.status_code not in (401, 403), (role, path, r.text)
        else:
            assert r.status_code == 403, (role, path)
            assert f"has the {role} role" in r.json()["detail"]


def test_the_bearer_header_works_too(client, keys):
    r = client.get("/v1/scores", headers={"X-API-Key": "",
                                           "Authorization": f"Bearer {keys['reader']}"})
    assert r.status_code == 200


def test_keys_are_stored_hashed_and_shown_once(client, keys):
    from serving.app import app

    with Session(app.state.service.db) as s:
        rows = s.scalars(select(ApiKey)).all()
    stored = {r.key_hash for r in rows}
    assert hash_key(keys["reader"]) in stored
    assert not any(keys["reader"] in (r.key_hash, r.prefix, r.name) for r in rows)
    listing = client.get("/v1/keys").json()
    assert all(k["key"] is None for k in listing)


def test_a_revoked_key_stops_working(client):
    made = client.post("/v1/keys", json={"name": "temp", "role": "reader"}).json()
    assert client.get("/v1/scores", headers={"X-API-Key": made["key"]}).status_code == 200
    assert client.delete(f"/v1/keys/{made['id']}").status_code == 204
    r = client.get("/v1/scores", headers={"X-API-Key": made["key"]})
    assert r.status_code == 401
    assert client.delete(f"/v1/keys/{made['id']}").status_code == 404


def test_no_key_or_secret_reaches_the_logs(client, caplog):
    with caplog.at_level(logging.DEBUG):
        made = client.post("/v1/keys", json={"name": "logged", "role": "writer"}).json()
        client.get("/v1/scores", headers={"X-API-Key": made["key"]})
        client.get("/v1/scores", headers={"X-API-Key": "hs_wrong"})
        hook = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}).json()
    text = caplog.text
    for secret in (made["key"], ADMIN_KEY, hook["secret"], hash_key(made["key"])):
        assert secret not in text


def test_a_key_check_waiting_on_the_store_holds_up_no_other_request(client, keys, monkeypatch):
    """A key the cache does not hold is looked up in the store off the event loop: while one
    request's lookup waits (a slow or hung database), the service answers the others."""
    import threading

    from serving.auth import KeyChecker

    stalled_key, order = "hs_not_a_key_the_store_answers_quickly", []
    started, released = threading.Event(), threading.Event()
    lookup = KeyChecker._lookup

    def slow_lookup(self, digest):
        if digest == hash_key(stalled_key):
            order.append("lookup waits on the store")
            started.set()
            released.wait(20)
            order.append("lookup returns")
        return lookup(self, digest)

    monkeypatch.setattr(KeyChecker, "_lookup", slow_lookup)
    stalled = threading.Thread(target=call, args=(client, "get", "/v1/scores", None, stalled_key))
    stalled.start()
    try:
        assert started.wait(20)
        assert call(client, "get", "/v1/alerts", None, keys["reader"]).status_code == 200
        order.append("another request answered")
    finally:
        released.set()
        stalled.join(30)
    assert order == ["lookup waits on the store", "another request answered", "lookup returns"]
