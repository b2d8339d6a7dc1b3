"""Alert rules: raised by score changes and flags, one open alert per rule (dedupe), quiet during
the cool-down after a resolution, resolved automatically when the condition clears, manual alerts
only by hand. Store-level tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.alerts import AlertRules, alert_conditions, apply_alerts, create_alert
from serving.ops_store import Alert, Event
from serving.store import open_store

RULES = AlertRules(drop_points=10, churn_probability=0.5, cooldown=timedelta(hours=24))
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def scored(score: float, status: str = "healthy", flags: tuple[str, ...] = ()) -> dict:
    return {"score": score, "status": status,
            "flags": [{"code": c, "severity": "high", "title": c.title(), "text": "x"}
                      for c in flags]}


def test_conditions_come_from_status_drops_flags_and_churn_risk():
    got = alert_conditions(scored(20, "critical", ("usage_drop",)), 45, 0.7, RULES)
    assert set(got) == {"score_critical", "score_drop", "flag:usage_drop", "churn_risk"}
    assert got["flag:usage_drop"].severity == "high"
    assert alert_conditions(scored(80), 85, 0.1, RULES) == {}
    assert alert_conditions(scored(80), None, None, RULES) == {}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'alerts.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    with open_store(url) as store:
        yield store.engine


def run(db, conditions: dict, now: datetime):
    with Session(db) as s, s.begin():
        made, cleared = apply_alerts(s, "A1", conditions, RULES, now=now)
        return [a.rule for a in made], [a.rule for a in cleared]


def alerts(db) -> list[tuple[str, str, str | None]]:
    with Session(db) as s:
        return [(a.rule, a.status, a.resolution) for a in
                s.scalars(select(Alert).order_by(Alert.id))]


def test_an_open_alert_is_not_raised_twice(db):
    cond = alert_conditions(scored(20, "critical"), None, None, RULES)
    assert run(db, cond, T0) == (["score_critical"], [])
    assert run(db, cond, T0 + timedelta(hours=1)) == ([], [])
    assert len(alerts(db)) == 1


def test_an_alert_resolves_itself_when_its_condition_clears(db):
    run(db, alert_conditions(scored(20, "critical"), None, None, RULES), T0)
    assert run(db, {}, T0 + timedelta(days=1)) == ([], ["score_critical"])
    assert alerts(db) == [("score_critical", "resolved", "auto: condition cleared")]
    with Session(db) as s:
        kinds = list(s.scalars(select(Event.type).order_by(Event.id)))
    assert kinds == ["Alert.created", "Alert.resolved"]


def test_a_rule_stays_quiet_during_its_cool_down(db):
    cond = alert_conditions(scored(20, "critical"), None, None, RULES)
    run(db, cond, T0)
    run(db, {}, T0 + timedelta(hours=1))               # cleared, resolved
    assert run(db, cond, T0 + timedelta(hours=5)) == ([], [])   # back within 24 h: quiet
    assert run(db, cond, T0 + timedelta(hours=26)) == (["score_critical"], [])


def test_manual_alerts_are_never_auto_resolved(db):
    with Session(db) as s, s.begin():
        create_alert(s, "A1", "manual", "low", "check renewal", "ana", now=T0)
    run(db, {}, T0 + timedelta(days=3))
    assert alerts(db) == [("manual", "open", None)]
