"""Events: the rules that emit them, the outbox written with the change, and webhook delivery
(HMAC signature, retries with back-off, dead letter, exactly one delivery per subscriber across
worker restarts). Store-level tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.alerts import AlertRules
from serving.delivery import DeliveryPolicy, DeliveryWorker, backoff_delay, redeliver, verify
from serving.events import EventRules, record_scores, score_events
from serving.ops_store import Delivery, Event, Webhook, add_event, claim_due
from serving.store import HealthScoreRecord, open_store
from serving.webhook_targets import AllowList
from tests.support.service_fixtures import LOCAL_RECEIVERS, Receiver

LOCAL = AllowList.parse(LOCAL_RECEIVERS)

RULES = EventRules(change_points=5, risk_points=10)
CUTS = {"default": (61.0, 31.0)}


def row(score: float, *, grade: str = "C", status: str = "healthy", band: str = "Healthy",
        flags: tuple[str, ...] = (), account: str = "A1", as_of: str = "2025-01-08"
        ) -> dict:
    return {"account_id": account, "as_of": pd.Timestamp(as_of), "score": score,
            "grade": grade, "band": band, "colour": "green", "status": status,
            "trend": "stable", "previous_score": None,
            **{f"dim_{d}": score for d in ("engagement", "adoption", "usage", "support",
                                           "satisfaction", "value", "relationship")},
            "flags": [{"code": c, "severity": "high", "title": c, "text": c} for c in flags],
            "missing": [], "coverage": 1.0, "profile": "default", "config_version": "v1"}


def types(events) -> list[str]:
    return [t for t, _ in events]


# --- the rules (pure) -----------------------------------------------------------------------------

def test_a_first_score_emits_only_calculated():
    assert types(score_events(row(70), None, RULES)) == ["calculated"]


def test_grade_and_status_changes_are_events():
    got = types(score_events(row(55, grade="F", status="at-risk"),
                             row(58, grade="D", status="healthy"), RULES))
    assert "Grade.changed" in got and "Status.changed" in got
    assert "Score.declined" not in got  # a 3-point move is under the threshold


def test_declines_and_improvements_need_the_configured_move():
    assert "Score.declined" in types(score_events(row(60), row(66), RULES))
    assert "Score.improved" in types(score_events(row(72), row(66), RULES))
    assert not {"Score.declined", "Score.improved"} & set(types(
        score_events(row(64), row(66), RULES)))


def test_falling_through_a_status_cut_breaches_a_threshold():
    ev = dict(score_events(row(59), row(63), RULES, status_cuts=(61, 31)))
    assert ev["Threshold.breached"]["threshold"] == 61
    assert "Threshold.breached" not in types(score_events(row(63), row(59), RULES,
                                                          status_cuts=(61, 31)))


def test_risk_increases_with_a_new_flag_or_a_churn_jump():
    ev = dict(score_events(row(70, flags=("usage_drop",)), row(70), RULES))
    assert ev["Risk.increased"]["newFlags"] == ["usage_drop"]
    assert "Risk.increased" not in types(score_events(row(70, flags=("usage_drop",)),
                                                      row(70, flags=("usage_drop",)), RULES))
    assert "Risk.increased" in types(score_events(row(70), row(70), RULES, churn=0.5,
                                                  old_churn=0.3))


def test_health_declined_only_the_first_time_below_30():
    assert "health.declined" in types(score_events(row(25), row(40), RULES,
                                                   first_below_floor=True))
    assert "health.declined" not in types(score_events(row(25), row(40), RULES,
                                                       first_below_floor=False))
    assert "health.declined" not in types(score_events(row(35), row(40), RULES,
                                                       first_below_floor=True))


def test_backoff_doubles_up_to_a_cap():
    policy = DeliveryPolicy(backoff=2, max_backoff=10)
    assert [backoff_delay(n, policy) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


# --- the outbox -----------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'ops.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    with open_store(url) as s:
        yield s


def record(store, frame, **kw):
    return record_scores(store.engine, frame, event_rules=RULES, alert_rules=AlertRules(),
                         status_cuts=CUTS, **kw)


def count(store, model, *where) -> int:
    with Session(store.engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_scores_and_their_events_are_written_together(store):
    record(store, pd.DataFrame([row(70, as_of="2025-01-01")]))
    record(store, pd.DataFrame([row(25, grade="F", status="critical", band="At Risk",
                                     as_of="2025-01-08")]))
    with Session(store.engine) as s:
        kinds = list(s.scalars(select(Event.type).order_by(Event.id)))
    assert kinds.count("calculated") == 2
    for kind in ("Grade.changed", "Status.changed", "Score.declined", "Threshold.breached",
                 "health.declined", "Alert.created"):
        assert kind in kinds, kind
    assert count(store, HealthScoreRecord) == 2


def test_a_failed_write_leaves_no_event_and_no_score(store):
    bad = pd.DataFrame([row(70)]).drop(columns=["coverage"])
    with pytest.raises(ValueError):
        record(store, bad)
    assert count(store, Event) == 0 and count(store, HealthScoreRecord) == 0


def test_the_daily_job_rerun_for_a_date_adds_no_event_twice(store):
    frame = pd.DataFrame([row(70, account="A1"), row(20, account="A2", status="critical")])
    first = record(store, frame, idempotency="daily")
    n = count(store, Event)
    second = record(store, frame, idempotency="daily")
    assert first.events and first.alerts_created == 1
    assert second.events == [] and second.alerts_created == 0
    assert count(store, Event) == n and count(store, HealthScoreRecord) == 2


def test_the_daily_job_stores_a_scored_date_with_the_same_events(store):
    from features.contract.tables import TABLES
    from scoring.health import load_rules, score_frame
    from scoring.health.examples import random_features
    from serving.events import record_daily
    from serving.settings import ServingConfig

    scored = score_frame(random_features(20, seed=4), frozenset(t.name for t in TABLES),
                         load_rules())
    first = record_daily(store.engine, scored, load_rules(), ServingConfig())
    again = record_daily(store.engine, scored, load_rules(), ServingConfig())
    assert len(first.events) >= 20 and again.events == []
    assert count(store, Event, Event.type == "calculated") == 20
    assert count(store, HealthScoreRecord) == 20


def test_health_declined_fires_once_per_account(store):
    record(store, pd.DataFrame([row(50, as_of="2025-01-01")]))
    record(store, pd.DataFrame([row(20, as_of="2025-01-08")]))
    record(store, pd.DataFrame([row(40, as_of="2025-01-15")]))
    record(store, pd.DataFrame([row(15, as_of="2025-01-22")]))
    assert count(store, Event, Event.type == "health.declined") == 1


# --- delivery -------------------------------------------------------------------------------------

def hook(store, url: str, types: list[str] | None = None, secret: str = "s" * 32) -> int:
    with Session(store.engine) as s, s.begin():
        h = Webhook(url=url, secret=secret, event_types=types or [], active=True,
                    created_at=datetime.now(UTC))
        s.add(h)
        s.flush()
        return h.id


def emit(store, n: int, type_: str = "calculated") -> list[str]:
    with Session(store.engine) as s, s.begin():
        return [add_event(s, type_, f"A{i}", {"i": i}).uid for i in range(n)]


def drain(worker: DeliveryWorker, until: float = 10.0) -> None:
    end = time.monotonic() + until
    while time.monotonic() < end:
        worker.run_once(now=datetime.now(UTC) + timedelta(hours=1))
        with Session(worker.engine) as s:
            if not s.scalar(select(func.count()).select_from(Delivery)
                            .where(Delivery.status == "pending")):
                return


def test_events_are_delivered_signed_to_every_subscriber_of_their_type(store):
    with Receiver() as a, Receiver() as b:
        hook(store, a.url, secret="a" * 32)
        hook(store, b.url, types=["Alert.created"], secret="b" * 32)
        uids = emit(store, 3) + emit(store, 1, "Alert.created")
        worker = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0), allow=LOCAL)
        drain(worker)
        worker.stop()
    assert sorted(a.event_ids()) == sorted(uids)
    assert b.event_ids() == [uids[-1]]
    call = a.calls[0]
    headers = call["headers"]
    assert verify("a" * 32, headers["X-HealthScore-Timestamp"], call["body"],
                  headers["X-HealthScore-Signature"])
    assert not verify("b" * 32, headers["X-HealthScore-Timestamp"], call["body"],
                      headers["X-HealthScore-Signature"])
    body = json.loads(call["body"])
    assert body["id"] == headers["X-HealthScore-Event-Id"] and body["type"] == "calculated"


def test_failures_are_retried_with_backoff_until_delivered(store):
    with Receiver(fail_first=2) as rec:
        hook(store, rec.url)
        [uid] = emit(store, 1)
        worker = DeliveryWorker(store.engine, DeliveryPolicy(backoff=30, max_attempts=5),
                                allow=LOCAL)
        worker.run_once()
        with Session(store.engine) as s:
            d = s.scalars(select(Delivery)).one()
            assert d.status == "pending" and d.attempts == 1 and d.last_status == 500
            wait = d.next_attempt_at.replace(tzinfo=UTC) - datetime.now(UTC)
            assert timedelta(seconds=25) < wait <= timedelta(seconds=30)
        assert worker.run_once() == 0  # not due yet
        drain(worker)
        worker.stop()
    assert rec.event_ids() == [uid]
    assert count(store, Delivery, Delivery.status == "delivered", Delivery.attempts == 3) == 1


def test_a_delivery_that_keeps_failing_is_dead_lettered_and_can_be_replayed(store):
    with Receiver(fail_always=True) as rec:
        hook(store, rec.url)
        emit(store, 1)
        worker = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, max_attempts=3),
                                allow=LOCAL)
        drain(worker)
        assert count(store, Delivery, Delivery.status == "dead", Delivery.attempts == 3) == 1
        with Session(store.engine) as s:
            did = s.scalars(select(Delivery.id)).one()
        rec.fail_always = False
        assert redeliver(store.engine, did)
        drain(worker)
        worker.stop()
    assert count(store, Delivery, Delivery.status == "delivered") == 1


def test_no_event_is_lost_or_delivered_twice_across_worker_restarts(store):
    with Receiver() as rec:
        hook(store, rec.url)
        uids = emit(store, 30)
        first = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, batch=5), allow=LOCAL)
        first.run_once()  # one batch, then the "process" stops
        first.stop()
        assert 0 < len(rec.event_ids()) < 30
        # Two workers after the restart (e.g. two service workers) share the rest.
        second = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, batch=5), allow=LOCAL,
                                poll=0.01)
        third = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, batch=5), allow=LOCAL,
                                poll=0.01)
        second.start()
        third.start()
        end = time.monotonic() + 15
        while len(rec.event_ids()) < 30 and time.monotonic() < end:
            time.sleep(0.05)
        second.stop()
        third.stop()
    got = rec.event_ids()
    assert sorted(got) == sorted(uids)
    assert len(got) == len(set(got)) == 30


def test_a_stopped_worker_hands_back_the_deliveries_it_claimed_and_did_not_attempt(store):
    with Receiver() as rec:
        hook(store, rec.url)
        emit(store, 4)
        first = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, batch=10, lease=600),
                               allow=LOCAL)
        with Session(store.engine) as s, s.begin():
            claimed = claim_due(s, first.owner, limit=10, lease=timedelta(seconds=600),
                                now=datetime.now(UTC))
        assert len(claimed) == 4  # claimed, then the service stops before attempting them
        first.stop()
        assert count(store, Delivery, Delivery.lease_owner.is_not(None)) == 0
        second = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0), allow=LOCAL)
        assert second.run_once() == 4  # at once, not after the ten-minute lease
        second.stop()
    assert len(rec.event_ids()) == 4
