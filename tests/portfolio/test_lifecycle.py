"""Lifecycle stages (rules and causes), the journey recorded by the daily job's portfolio pass
with a `lifecycle.changed` event through the outbox (delivered to a subscribed webhook), and a
re-run of a date that adds nothing twice. Store tests run on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scoring.anomalies import ANOMALY_COLUMNS
from scoring.portfolio.lifecycle import (
    AT_RISK,
    GROWTH,
    MATURE,
    ONBOARDING,
    RENEWAL,
    lifecycle_stages,
    stage_changes,
    stage_of,
)
from scoring.portfolio.settings import LifecycleConfig, PortfolioConfig
from serving.ops_store import Delivery, Event, Webhook, utcnow
from serving.portfolio import record_portfolio
from serving.portfolio_store import JourneyEntry
from serving.store import open_store
from tests.support.portfolio_frames import scored
from tests.support.service_fixtures import BACKENDS, store_for

CFG = LifecycleConfig()
NO_ANOMALIES = pd.DataFrame(columns=list(ANOMALY_COLUMNS))


@pytest.mark.parametrize("tenure, usage, renewal, term, band, status, stage, words", [
    (30, -80.0, 10, 365, "At Risk", "critical", ONBOARDING, "onboarding period"),
    (400, 0.0, 200, 365, "At Risk", "critical", AT_RISK, "health band At Risk"),
    (400, -50.0, 200, 365, "Healthy", "healthy", AT_RISK, "down 50%"),
    (400, 0.0, 45, 365, "Healthy", "healthy", RENEWAL, "ends in 45 days"),
    (400, 0.0, 20, 30, "Healthy", "healthy", MATURE, "steady usage"),
    (400, 25.0, 200, 365, "Healthy", "healthy", GROWTH, "up 25%"),
    (200, 0.0, 200, 365, "Healthy", "healthy", GROWTH, "past onboarding"),
    (800, 0.0, 200, 365, "Champion", "healthy", MATURE, "a customer for 800 days"),
])
def test_each_stage_has_its_rule_and_cause(tenure, usage, renewal, term, band, status, stage,
                                           words):
    got, cause = stage_of(tenure, usage, renewal, term, band, status, CFG)
    assert got == stage and words in cause


def test_stage_thresholds_come_from_the_settings():
    assert stage_of(100, 0, 300, 365, "Healthy", "healthy", CFG)[0] == GROWTH
    longer = LifecycleConfig(onboarding_days=120)
    assert stage_of(100, 0, 300, 365, "Healthy", "healthy", longer)[0] == ONBOARDING


def test_changes_are_the_accounts_whose_stage_moved():
    stages = pd.DataFrame({"account_id": ["a", "b", "c"], "stage": [MATURE, RENEWAL, GROWTH],
                           "cause": ["x", "y", "z"]})
    got = stage_changes(stages, {"a": MATURE, "b": MATURE})
    assert got.to_dict("records") == [
        {"account_id": "b", "from_stage": MATURE, "to_stage": RENEWAL, "cause": "y"},
        {"account_id": "c", "from_stage": None, "to_stage": GROWTH, "cause": "z"}]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with store_for(request.param, tmp_path) as url, open_store(url) as s:
        yield s


def _frame(as_of: date, renewal_days: float):
    return scored([{"tenure_days": 800.0, "days_to_renewal": renewal_days,
                    "contract_term_days": 365.0},
                   {"tenure_days": 800.0, "days_to_renewal": 300.0}], as_of=as_of)


def _events(store, type_: str) -> list[Event]:
    with Session(store.engine) as s:
        return list(s.scalars(select(Event).where(Event.type == type_).order_by(Event.id)))


def test_the_journey_records_each_change_with_date_cause_and_an_event(store):
    with Session(store.engine) as s, s.begin():
        s.add(Webhook(url="http://127.0.0.1:9/h", secret="s" * 32,
                      event_types=["lifecycle.changed"], active=True, created_at=utcnow()))
    cfg = PortfolioConfig()
    first = record_portfolio(store.engine, _frame(date(2025, 6, 1), 200.0), None, cfg,
                             idempotency="daily:2025-06-01", anomalies=NO_ANOMALIES)
    assert first.journey_entries == 2 and first.lifecycle_events == 0  # first stages only
    same = record_portfolio(store.engine, _frame(date(2025, 6, 2), 200.0), None, cfg,
                            idempotency="daily:2025-06-02", anomalies=NO_ANOMALIES)
    assert same.journey_entries == 0
    moved = record_portfolio(store.engine, _frame(date(2025, 6, 3), 60.0), None, cfg,
                             idempotency="daily:2025-06-03", anomalies=NO_ANOMALIES)
    assert moved.journey_entries == 1 and moved.lifecycle_events == 1
    with Session(store.engine) as s:
        rows = s.scalars(select(JourneyEntry).where(JourneyEntry.account_id == "A00000")
                         .order_by(JourneyEntry.as_of)).all()
        assert [(r.as_of, r.from_stage, r.stage) for r in rows] == [
            (date(2025, 6, 1), None, MATURE), (date(2025, 6, 3), MATURE, RENEWAL)]
        assert "ends in 60 days" in rows[-1].cause
    (event,) = _events(store, "lifecycle.changed")
    assert event.account_id == "A00000"
    assert event.payload | {"cause": ""} == {
        "accountId": "A00000", "name": "Customer A00000", "asOf": "2025-06-03",
        "from": MATURE, "to": RENEWAL, "cause": ""}
    with Session(store.engine) as s:  # the subscribed webhook gets a delivery of it
        assert s.scalar(select(func.count()).select_from(Delivery)
                        .where(Delivery.event_id == event.id)) == 1
    # A re-run of the date replaces its rows and adds no event twice.
    again = record_portfolio(store.engine, _frame(date(2025, 6, 3), 60.0), None, cfg,
                             idempotency="daily:2025-06-03", anomalies=NO_ANOMALIES)
    assert again.journey_entries == 1 and again.lifecycle_events == 0
    assert len(_events(store, "lifecycle.changed")) == 1
    with Session(store.engine) as s:
        assert s.scalar(select(func.count()).select_from(JourneyEntry)) == 3


def test_stages_of_the_frame_name_every_account():
    got = lifecycle_stages(_frame(date(2025, 6, 1), 60.0), CFG)
    assert list(got["stage"]) == [RENEWAL, MATURE]
    assert list(got["account_id"]) == ["A00000", "A00001"]
