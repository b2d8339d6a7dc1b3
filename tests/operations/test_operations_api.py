"""The operations resources through the API: playbooks, tasks (writer creates and updates,
reader lists), the run log written by the in-service schedule on a controlled clock, the
monitoring and the effect; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.service_fixtures import BACKENDS, service_client, state_of_client, store_for


@pytest.fixture(scope="module", params=BACKENDS)
def client(request, world_root, tmp_path_factory):
    with store_for(request.param, tmp_path_factory.mktemp("ops")) as url, \
            service_client(world_root, url) as c:
        yield c


@pytest.fixture(scope="module")
def keys(client):
    out = {}
    for role in ("reader", "writer"):
        r = client.post("/v1/keys", json={"name": f"ops-{role}", "role": role})
        out[role] = {"X-API-Key": r.json()["key"]}
    return out


def test_playbooks_are_listed_and_matched_to_an_account(client, keys):
    books = client.get("/v1/playbooks", headers=keys["reader"]).json()
    assert {"usage-recovery", "at-risk-rescue"} <= {b["name"] for b in books}
    r = client.get("/v1/accounts/A00060/playbooks", headers=keys["reader"],
                   params={"tier": "high", "lifecycle": "onboarding"})
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert client.get("/v1/accounts/NOPE/playbooks", headers=keys["reader"]).status_code == 404


def test_tasks_need_a_writer_and_are_listed_for_a_reader(client, keys):
    body = {"accountId": "A00060", "playbook": "renewal-prep", "owner": "ana"}
    assert client.post("/v1/tasks", json=body, headers=keys["reader"]).status_code == 403
    made = client.post("/v1/tasks", json=body, headers=keys["writer"])
    assert made.status_code == 200, made.text
    tasks = made.json()
    assert len(tasks) == 2 and tasks[0]["status"] == "open"
    bad = client.post("/v1/tasks", json={**body, "playbook": "nope"}, headers=keys["writer"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "playbook"]
    assert client.post("/v1/tasks", json={**body, "accountId": "NOPE"},
                       headers=keys["writer"]).status_code == 404
    tid = tasks[0]["id"]
    assert client.patch(f"/v1/tasks/{tid}", json={"status": "done"},
                        headers=keys["reader"]).status_code == 403
    done = client.patch(f"/v1/tasks/{tid}", json={"status": "done"}, headers=keys["writer"])
    assert done.status_code == 200 and done.json()["completedAt"]
    assert client.patch("/v1/tasks/999999", json={"status": "done"},
                        headers=keys["writer"]).status_code == 404
    listed = client.get("/v1/tasks", params={"accountId": "A00060", "status": "done"},
                        headers=keys["reader"]).json()
    assert [t["id"] for t in listed] == [tid]


def test_the_schedule_runs_the_day_once_and_the_log_shows_it(client, keys):
    from serving.operations import schedule_of

    state = state_of_client()
    now = {"t": datetime(2030, 5, 1, 3, 59, tzinfo=UTC)}
    schedule = schedule_of(state, clock=lambda: now["t"])
    assert schedule.tick() is None
    now["t"] = datetime(2030, 5, 1, 4, 0, tzinfo=UTC)
    first = schedule.tick()
    assert first is not None
    assert schedule_of(state, clock=lambda: now["t"]).tick() is None  # another worker: no
    runs = client.get("/v1/runs", headers=keys["reader"]).json()
    assert runs[0]["id"] == first and runs[0]["status"] == "succeeded"
    assert runs[0]["accounts"] > 50 and runs[0]["trigger"] == "schedule"
    assert runs[0]["runDate"] == "2030-05-01" and runs[0]["endedAt"]
    # The daily run stored the probabilities the monitoring measures.
    report = client.get("/v1/monitoring", headers=keys["reader"])
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["drift"] == [] and any("reference" in n for n in body["notes"])
    assert {r["label"] for r in body["realised"]} >= {"churn_90d"}


def test_a_second_monitoring_call_reads_the_scored_portfolio_again(client, keys, monkeypatch):
    """The drift needs the portfolio scored as of the latest stored date: the service scores it
    once per snapshot, rules version and date, not on every call."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    import serving.monitoring as monitoring
    import serving.state as state_module
    from scoring.drift import build_reference

    reference = build_reference(pd.DataFrame({"score": np.linspace(0.0, 100.0, 400)}), ["score"])
    monkeypatch.setattr(monitoring, "load_reference",
                        lambda folder: (reference, Path(folder) / "reference.json"))
    table = monitoring.drift_table  # the shared world is smaller than the row minimum
    monkeypatch.setattr(monitoring, "drift_table",
                        lambda ref, cur, **_: table(ref, cur, min_rows=1))
    calls: list[object] = []
    for module in (monitoring, state_module):
        real = module.score_accounts
        monkeypatch.setattr(module, "score_accounts",
                            lambda *a, _real=real, **k: calls.append(a[2]) or _real(*a, **k))
    first = client.get("/v1/monitoring", headers=keys["reader"])
    assert first.status_code == 200, first.text
    assert [r["column"] for r in first.json()["drift"]] == ["score"]
    scored = len(calls)
    second = client.get("/v1/monitoring", headers=keys["reader"])
    assert second.status_code == 200 and second.json()["drift"] == first.json()["drift"]
    assert len(calls) == scored <= 1


def test_the_daily_run_scores_the_portfolio_once(client, monkeypatch):
    """The run's monitoring measures the drift of the frame the run scored and stored."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    import serving.daily as daily
    import serving.monitoring as monitoring
    import serving.state as state_module
    from scoring.drift import build_reference
    from serving.operations import daily_work

    reference = build_reference(pd.DataFrame({"score": np.linspace(0.0, 100.0, 400)}), ["score"])
    monkeypatch.setattr(monitoring, "load_reference",
                        lambda folder: (reference, Path(folder) / "reference.json"))
    seen: list[object] = []
    real_drift = monitoring.drift_table
    monkeypatch.setattr(monitoring, "drift_table", lambda ref, cur, **_: seen.append(len(cur))
                        or real_drift(ref, cur, min_rows=1))
    calls: list[object] = []
    for module in (daily, monitoring, state_module):
        real = module.score_accounts
        monkeypatch.setattr(module, "score_accounts",
                            lambda *a, _real=real, **k: calls.append(a[2]) or _real(*a, **k))
    summary = daily_work(state_of_client(), clock=lambda: datetime(2030, 6, 1, 4, 0, tzinfo=UTC))
    assert summary.failures == 0
    assert len(calls) == 1 and seen and seen[0] >= summary.accounts


def test_the_effect_says_plainly_when_it_cannot_be_estimated(client, keys):
    r = client.get("/v1/effect", headers=keys["reader"])
    assert r.status_code == 200
    body = r.json()
    warnings = " ".join(body["warnings"] + [w for e in body["estimates"]
                                            for w in e["warnings"]])
    assert "no completed playbook" in warnings or "too few matched pairs" in warnings
