"""Secrets stay secret through a whole flow on a real `bentoml serve`: keys minted, a webhook
registered and delivered, requests refused with wrong keys, scores exported. No API key, key hash
or webhook secret appears in the process's output (stdout and stderr), in any response after the
one that shows it, in an error body, an export, the audit log or a delivered event; keys are
stored hashed only; webhook signatures cover a timestamp; a webhook's secret is shown once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from serving.auth import hash_key
from serving.delivery import sign, verify
from serving.ops_store import ApiKey, AuditEntry, Webhook
from tests.service.test_service_serve import Served, wait_for
from tests.support.service_fixtures import ADMIN_KEY, Receiver

pytestmark = pytest.mark.slow


def test_no_key_or_webhook_secret_leaks_through_a_served_flow(world_root, tmp_path):
    db = tmp_path / "store.db"
    store_url = f"sqlite:///{db}"
    log = tmp_path / "serve.log"
    seen: list[str] = []  # every response body after the one that shows a secret
    with Receiver() as rec:
        served = Served(world_root, store_url, tmp_path / "bentoml", log)
        try:
            c = served.client
            writer = c.post("/v1/keys", json={"name": "ops-writer", "role": "writer"}).json()
            reader = c.post("/v1/keys", json={"name": "ops-reader", "role": "reader"}).json()
            made = c.post("/v1/webhooks", json={"url": rec.url})
            assert made.status_code == 201
            secret = made.json()["secret"]
            assert secret and len(secret) >= 32  # shown once, at creation
            given = "g" * 24 + "given-secret-0123"
            assert c.post("/v1/webhooks", json={"url": rec.url + "2", "secret": given}
                          ).status_code == 201

            wk, rk = writer["key"], reader["key"]
            calls = [
                c.post("/v1/calculate", json={"accountId": "A00040"}, headers={"X-API-Key": wk}),
                c.post("/v1/createAlert", json={"accountId": "A00040", "message": "m"},
                       headers={"X-API-Key": wk}),
                # Wrong keys, close to real ones, in both headers; a role that may not.
                c.get("/v1/scores", headers={"X-API-Key": wk[:-1] + "x"}),
                c.get("/v1/scores", headers={"X-API-Key": "",
                                             "Authorization": f"Bearer {rk}0"}),
                c.get("/v1/webhooks", headers={"X-API-Key": rk}),
                c.post("/v1/keys", json={"name": "n", "role": "admin"},
                       headers={"X-API-Key": wk}),
                c.get("/v1/webhooks"), c.get("/v1/keys"),
                c.get("/v1/webhooks/1/deliveries"),
                c.get("/v1/exportScores?format=csv", headers={"X-API-Key": rk}),
                c.get("/v1/exportScores?format=json", headers={"X-API-Key": rk}),
                c.get("/v1/scores", headers={"X-API-Key": rk}),
                c.get("/v1/alerts", headers={"X-API-Key": rk}),
                c.get("/v1/config/versions", headers={"X-API-Key": rk}),
            ]
            assert [r.status_code for r in calls[2:6]] == [401, 401, 403, 403]
            seen += [r.text for r in calls]
            listing = c.get("/v1/webhooks").json()
            assert len(listing) == 2 and all(h["secret"] is None for h in listing)
            assert all(k["key"] is None for k in c.get("/v1/keys").json())
            assert wait_for(lambda: len(rec.calls) >= 2, 30)
        finally:
            served.stop()

    # Signatures are over "<timestamp>.<body>", with a fresh timestamp: a replay with another
    # timestamp does not verify.
    for call in rec.calls:
        h, body = call["headers"], call["body"]
        stamp = h["X-HealthScore-Timestamp"]
        assert abs(int(stamp) - time.time()) < 300
        key = secret if call["path"] == "/hook" else given
        assert verify(key, stamp, body, h["X-HealthScore-Signature"])
        assert not verify(key, str(int(stamp) - 600), body, h["X-HealthScore-Signature"])
        assert h["X-HealthScore-Signature"] == sign(key, stamp, body)
        seen.append(body.decode())
        seen.append(str(h))

    engine = create_engine(store_url)
    with Session(engine) as s:
        keys = s.scalars(select(ApiKey)).all()
        audit = [str(a.detail) + str(a.target) for a in s.scalars(select(AuditEntry))]
        hooks = s.scalars(select(Webhook)).all()
    engine.dispose()
    stored = {k.key_hash for k in keys}
    for key in (wk, rk, ADMIN_KEY):  # hashed only: no column holds the key itself
        assert hash_key(key) in stored
        assert all(key not in (k.key_hash, k.prefix, k.name) for k in keys)
        assert key.encode() not in db.read_bytes()
    assert {h.secret for h in hooks} == {secret, given}  # kept for signing, never listed

    output = Path(log).read_text(errors="replace")
    assert "shutdown" in output  # the whole run's output, to its end
    secrets = {"writer key": wk, "reader key": rk, "admin key": ADMIN_KEY,
               "webhook secret": secret, "given webhook secret": given,
               "writer key hash": hash_key(wk), "admin key hash": hash_key(ADMIN_KEY)}
    for what, value in secrets.items():
        assert value not in output, f"the {what} is in the server's output"
        assert not any(value in text for text in seen), f"the {what} is in a response"
        assert not any(value in text for text in audit), f"the {what} is in the audit log"
