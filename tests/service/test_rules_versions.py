"""Rules versions through the API: a change of weights or thresholds is a new stored version that
every later score records; an invalid change is refused and changes nothing. Each test has a
service and a store of its own, since a rules change moves every later score.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.ops_store import ConfigVersion
from serving.store import HealthScoreRecord
from tests.support.service_fixtures import BACKENDS, service_client, store_for


@pytest.fixture(params=BACKENDS)
def client(request, world_root, tmp_path):
    with store_for(request.param, tmp_path) as url, service_client(world_root, url) as c:
        yield c


@pytest.fixture
def state(client):
    from serving.app import app

    return app.state.service


def stored(state, account_id: str) -> list[tuple]:
    with Session(state.db) as s:
        return s.execute(select(HealthScoreRecord.as_of, HealthScoreRecord.score,
                                HealthScoreRecord.config_version)
                         .where(HealthScoreRecord.account_id == account_id)).all()


def test_set_weights_creates_a_version_that_later_scores_record(client, state):
    before = state.rules.config_version
    old = client.post("/v1/calculate", json={"accountId": "A00030"}).json()
    r = client.post("/v1/setWeights", json={"weights": {"support": 60}, "reason": "test"})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert version != before and r.json()["active"]
    new = client.post("/v1/calculate", json={"accountId": "A00030"}).json()
    assert new["metadata"]["configVersion"] == version
    assert new["weights"]["support"] == 60
    assert new["automaticScore"] != pytest.approx(old["automaticScore"])
    assert (state.default_as_of, pytest.approx(new["automaticScore"]), version) in \
        stored(state, "A00030")
    versions = client.get("/v1/config/versions").json()
    assert versions[0]["version"] == version and versions[0]["change"] == "weights"


def test_invalid_weights_are_refused_and_change_nothing(client, state):
    with Session(state.db) as s:
        n = s.scalar(select(func.count()).select_from(ConfigVersion))
    zero = dict.fromkeys(("engagement", "adoption", "usage", "support", "satisfaction",
                          "value", "relationship"), 0)
    r = client.post("/v1/setWeights", json={"weights": zero})
    assert r.status_code == 422 and "weights sum to zero" in r.text
    assert client.post("/v1/setWeights", json={"weights": {"vibes": 3}}).status_code == 422
    assert client.post("/v1/setWeights", json={"weights": {"support": 1},
                                               "profile": "nope"}).status_code == 404
    with Session(state.db) as s:
        assert s.scalar(select(func.count()).select_from(ConfigVersion)) == n


def test_set_thresholds_versions_status_cuts_and_flags(client, state):
    r = client.post("/v1/setThresholds", json={"status": {"healthy_min": 95,
                                                          "at_risk_min": 90},
                                               "flags": {"usage_drop":
                                                         {"pct_change_below": -50}}})
    assert r.status_code == 200, r.text
    hs = client.post("/v1/calculate", json={"accountId": "A00031"}).json()
    assert hs["metadata"]["configVersion"] == r.json()["version"]
    if hs["automaticScore"] < 89.5:
        assert hs["status"] in ("critical", "churned")
    bad = client.post("/v1/setThresholds", json={"bands": [{"name": "x", "min": 0,
                                                            "max": 50}]})
    assert bad.status_code == 422 and "bands" in bad.text
    assert client.post("/v1/setThresholds", json={}).status_code == 422
