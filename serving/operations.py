"""What the operations routes and the schedule call on a running service: playbooks matched to
an account, tasks, the run log, the monitoring report, the playbook effect, and the daily work
the schedule runs (score the portfolio, fire the tasks that fell due, check the monitoring).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from features.contract.warehouse import today
from scoring.playbooks import MatchContext, Playbook, load_playbooks, match_playbooks
from serving.daily import Clock, RunSummary, score_day
from serving.monitoring import monitor
from serving.operations_store import JobRun, list_runs
from serving.schedule import DailySchedule, utc_clock
from serving.schemas.operations import ActionOut, PlaybookOut, RunOut
from serving.state import ServiceState
from serving.tasks import fire_due

logger = logging.getLogger(__name__)


def playbooks_of(state: ServiceState) -> tuple[Playbook, ...]:
    found = getattr(state, "_playbooks", None)
    if found is None:
        found = load_playbooks(state.settings.health.playbooks_file)
        state._playbooks = found  # type: ignore[attr-defined]
    return found


def playbook_out(p: Playbook) -> PlaybookOut:
    return PlaybookOut(name=p.name, title=p.title, priority=p.priority,
                       when={k: list(v) for k, v in p.when.model_dump().items() if v},
                       actions=[ActionOut(title=a.title, dueDays=a.due_days)
                                for a in p.actions])


def account_playbooks(state: ServiceState, account_id: str, lifecycle: str | None,
                      tier: str | None) -> list[PlaybookOut]:
    """The playbooks today's score of the account points at."""
    account = state.account(account_id)
    ctx = MatchContext.of_score(account.score, lifecycle=lifecycle, tier=tier)
    return [playbook_out(p) for p in match_playbooks(playbooks_of(state), ctx)]


def run_out(r: JobRun) -> RunOut:
    return RunOut(id=r.id, job=r.job, runDate=r.run_date, asOf=r.as_of, trigger=r.trigger,
                  status=r.status, runner=r.runner, startedAt=r.started_at, endedAt=r.ended_at,
                  accounts=r.accounts, failures=r.failures, error=r.error)


def runs(state: ServiceState, limit: int) -> list[RunOut]:
    return [run_out(r) for r in list_runs(state.db, limit=limit)]


def daily_work(state: ServiceState, clock: Any) -> RunSummary:
    """The schedule's run: today's scores in one transaction, then the tasks fallen due and
    the monitoring (a failure of those two counts in `failures`; the scores stand)."""
    snapshot = state.snapshot
    snapshot.refresh(force=True)
    con = snapshot.cursor()
    when = today(con, clock=clock().date())
    result = score_day(con, state.store, state.scorer, state.settings.serving, when,
                       portfolio_cfg=state.settings.portfolio)
    failures = 0
    try:
        fire_due(state.db, clock().date(), now=clock())
    except Exception:
        logger.exception("firing the due tasks failed")
        failures += 1
    try:
        # The drift reads the portfolio this run has just scored, not a second scoring of it.
        monitor(state.store, con, state.scorer, state.settings, as_of=when,
                scored_at=lambda _when: result.frame)
    except Exception:
        logger.exception("the monitoring check failed")
        failures += 1
    state.worker.wake()
    return RunSummary(as_of=when, accounts=result.written, failures=failures)


def tick_tasks(state: ServiceState, now: datetime) -> None:
    """Every schedule tick: the tasks that fell due today get their event."""
    if fire_due(state.db, now.date(), now=now):
        state.worker.wake()


def schedule_of(state: ServiceState, clock: Clock = utc_clock) -> DailySchedule:
    """The daily schedule of a service (not started): `daily_work` at `serving.daily_at` UTC,
    the due tasks on every tick."""
    cfg = state.settings.serving
    return DailySchedule(state.db, lambda: daily_work(state, clock), at=cfg.daily_at,
                         clock=clock, lease=timedelta(minutes=cfg.daily_lock_minutes),
                         poll_seconds=cfg.daily_poll_seconds,
                         every_tick=lambda now: tick_tasks(state, now))


def start_schedule(state: ServiceState) -> DailySchedule:
    schedule = schedule_of(state)
    schedule.start()
    return schedule
