"""Tasks, their due/overdue events, the job lock, the run log and the daily schedule on the
store, against SQLite and PostgreSQL; the schedule with a controlled clock (no sleeping)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from features.contract.tables import TABLES
from scoring.health import load_rules, score_frame
from scoring.health.examples import random_features
from scoring.playbooks import load_playbooks
from serving.daily import RunSummary, run_once
from serving.errors import NotFound, PayloadError
from serving.operations_store import JobRun, acquire_lock, list_runs, release_lock
from serving.ops_store import AuditEntry, Event
from serving.schedule import DailySchedule
from serving.schemas.operations import TaskRequest, TaskUpdate
from serving.store import open_store
from serving.tasks import create_tasks, fire_due, list_tasks, update_task

ALL = frozenset(t.name for t in TABLES)
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'ops.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    with open_store(url) as s:
        yield s


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def events(engine, type_=None):
    with Session(engine) as s:
        stmt = select(Event.type, Event.payload)
        if type_:
            stmt = stmt.where(Event.type == type_)
        return list(s.execute(stmt))


def test_tasks_from_a_playbook_are_audited_and_updated(store):
    books = load_playbooks()
    made = create_tasks(store.engine, TaskRequest(accountId="A1", playbook="usage-recovery",
                                                  owner="ana"), "writer-key", books,
                        today=date(2026, 3, 1))
    assert [t.dueDate for t in made] == [date(2026, 3, 4), date(2026, 3, 15)]
    assert {t.playbook for t in made} == {"usage-recovery"} and made[0].status == "open"
    one = create_tasks(store.engine, TaskRequest(accountId="A2", title="Call the CFO",
                                                 owner="ben", dueDate=date(2026, 3, 9)),
                       "writer-key", books, today=date(2026, 3, 1))
    assert one[0].dueDate == date(2026, 3, 9) and one[0].playbook is None
    done = update_task(store.engine, made[0].id, TaskUpdate(status="done"), "writer-key")
    assert done.status == "done" and done.completedAt is not None
    assert [t.id for t in list_tasks(store.engine, account_id="A1", status="open")] == \
        [made[1].id]
    with Session(store.engine) as s:
        actions = [a for a, in s.execute(select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions == ["task.created"] * 3 + ["task.updated"]
    with pytest.raises(NotFound):
        update_task(store.engine, 9999, TaskUpdate(status="done"), "w")
    with pytest.raises(PayloadError):
        create_tasks(store.engine, TaskRequest(accountId="A1", playbook="nope", owner="x"),
                     "w", books, today=date(2026, 3, 1))
    with pytest.raises(PayloadError):
        update_task(store.engine, made[1].id, TaskUpdate(), "w")


def test_due_and_overdue_fire_once_each(store):
    books = load_playbooks()
    t = create_tasks(store.engine, TaskRequest(accountId="A1", title="Call", owner="ana",
                                               dueDate=date(2026, 3, 5)), "w", books,
                     today=date(2026, 3, 1))[0]
    closed = create_tasks(store.engine, TaskRequest(accountId="A2", title="Call", owner="ana",
                                                    dueDate=date(2026, 3, 5)), "w", books,
                          today=date(2026, 3, 1))[0]
    update_task(store.engine, closed.id, TaskUpdate(status="done"), "w")
    assert fire_due(store.engine, date(2026, 3, 4)) == 0
    assert fire_due(store.engine, date(2026, 3, 5)) == 1
    assert fire_due(store.engine, date(2026, 3, 5)) == 0
    assert fire_due(store.engine, date(2026, 3, 6)) == 1
    assert fire_due(store.engine, date(2026, 3, 9)) == 0
    got = sorted(e.type for e in events(store.engine) if e.type.startswith("task."))
    assert got == ["task.due", "task.overdue"]
    assert all(e.payload["taskId"] == t.id for e in events(store.engine, "task.due"))


def test_the_lock_has_one_holder_until_released_or_expired(store):
    now = T0
    assert acquire_lock(store.engine, "job", "a", timedelta(minutes=5), now=now)
    assert not acquire_lock(store.engine, "job", "b", timedelta(minutes=5), now=now)
    assert acquire_lock(store.engine, "job", "b", timedelta(minutes=5),
                        now=now + timedelta(minutes=6))  # a's lease ran out
    release_lock(store.engine, "job", "a")  # not a's any more: nothing released
    assert not acquire_lock(store.engine, "job", "c", timedelta(minutes=5),
                            now=now + timedelta(minutes=7))
    release_lock(store.engine, "job", "b")
    assert acquire_lock(store.engine, "job", "c", timedelta(minutes=5), now=now)


def test_two_concurrent_runners_make_one_run(store):
    clock = Clock(T0)
    entered, release = threading.Event(), threading.Event()
    calls = []

    def work() -> RunSummary:
        calls.append(1)
        entered.set()
        assert release.wait(10)
        return RunSummary(as_of=date(2026, 3, 1), accounts=7)

    results = {}
    first = threading.Thread(target=lambda: results.update(
        a=run_once(store.engine, T0.date(), work, clock=clock, runner="a")))
    first.start()
    assert entered.wait(10)
    # The second runner comes while the first holds the lock, and once more after it is done.
    results["b"] = run_once(store.engine, T0.date(), work, clock=clock, runner="b")
    release.set()
    first.join(10)
    results["c"] = run_once(store.engine, T0.date(), work, clock=clock, runner="c")
    assert len(calls) == 1 and results["b"] is None and results["c"] is None
    runs = list_runs(store.engine)
    assert [(r.status, r.accounts, r.runner) for r in runs] == [("succeeded", 7, "a")]


def test_a_failed_run_is_logged_and_the_next_tick_retries(store):
    clock = Clock(T0.replace(hour=4, minute=1))
    attempts = []

    def work() -> RunSummary:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("warehouse gone")
        return RunSummary(as_of=date(2026, 3, 1), accounts=3)

    schedule = DailySchedule(store.engine, work, at=time(4, 0), clock=clock)
    assert schedule.tick() is None  # failed: logged, not raised
    assert schedule.tick() is not None
    runs = list_runs(store.engine)
    assert [r.status for r in runs] == ["succeeded", "failed"]
    assert "warehouse gone" in runs[1].error and runs[1].failures == 1


def test_the_schedule_runs_once_a_day_at_its_time(store):
    clock = Clock(T0)  # 03:00 UTC
    ran: list[datetime] = []
    ticks: list[datetime] = []

    def work() -> RunSummary:
        ran.append(clock())
        return RunSummary(as_of=clock().date(), accounts=1)

    schedule = DailySchedule(store.engine, work, at=time(4, 0), clock=clock,
                             every_tick=ticks.append)
    assert schedule.tick() is None and not ran
    clock.now = T0.replace(hour=4)
    assert schedule.tick() is not None
    clock.now = T0.replace(hour=9)
    assert schedule.tick() is None
    clock.now = T0 + timedelta(days=1, hours=0, minutes=30)  # 03:30 next day: not yet
    assert schedule.tick() is None
    clock.now = T0 + timedelta(days=1, hours=2)
    assert schedule.tick() is not None
    assert [r.date() for r in ran] == [date(2026, 3, 2), date(2026, 3, 3)]
    assert len(ticks) == 5
    with Session(store.engine) as s:
        assert s.scalar(select(JobRun.trigger).limit(1)) == "schedule"


def test_a_failed_day_leaves_the_previous_scores_intact(store):
    """The daily write is one transaction: a failure while writing day 2 keeps day 1 as it was
    and adds nothing of day 2 (scores, events)."""
    from serving.events import record_daily
    from serving.settings import ServingConfig

    rules = load_rules()
    day1 = score_frame(random_features(30, seed=1).assign(as_of=pd.Timestamp("2026-03-01")),
                       ALL, rules)
    record_daily(store.engine, day1, rules, ServingConfig())
    before = store.load_scores("2026-03-01")
    n_events = len(events(store.engine))
    day2 = score_frame(random_features(30, seed=1).assign(as_of=pd.Timestamp("2026-03-02")),
                       ALL, rules)

    def broken(session):  # the last write of the day's transaction fails
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        record_daily(store.engine, day2, rules, ServingConfig(), also=broken)
    assert store.count("2026-03-02") == 0
    after = store.load_scores("2026-03-01")
    pd.testing.assert_frame_equal(before, after)
    assert len(events(store.engine)) == n_events
