"""The daily job as a library function, and the run of it that happens once per day.

`score_day` is what `healthscore score` and the in-service schedule both call: score every
active account through `scoring.pipeline.score_accounts` and write the scores, their events and
alerts and the calibrated probabilities in ONE transaction (`serving.events.record_daily`), so
a run that fails halfway leaves the store, and the previous day's scores, as they were.

`run_once` wraps a job in the store-level lock and the run log: two workers (or a worker and a
cron line) that try the same day's run at the same moment make one run; a day whose run
succeeded is not run again by the schedule.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from scoring.pipeline import Progress, ScoredFrame, Scorer, score_accounts
from serving.events import RecordOutcome, record_daily
from serving.operations_store import (
    acquire_lock,
    finish_run,
    release_lock,
    start_run,
    succeeded_on,
    write_probabilities,
)
from serving.portfolio import PortfolioOutcome, record_portfolio
from serving.store import ScoreStore

logger = logging.getLogger(__name__)

DAILY_JOB = "daily-score"


@dataclass
class DayResult:
    frame: ScoredFrame
    outcome: RecordOutcome | None
    written: int
    portfolio: PortfolioOutcome | None = None
    """Lifecycle changes and usage anomalies recorded for the day (`serving.portfolio`)."""
    failures: int = 0
    """Steps after the scores that failed (task events, monitoring); the scores stand."""


def score_day(con: duckdb.DuckDBPyConnection, store: ScoreStore, scorer: Scorer,
              serving_cfg: Any, when: date, progress: Progress | None = None,
              portfolio_cfg: Any = None) -> DayResult:
    """Score the portfolio as of `when` and store it with its events, alerts and probabilities
    in one transaction; then, with `portfolio_cfg`, the day's lifecycle changes and usage
    anomalies (idempotent per date like the scores)."""
    report = progress or (lambda _s, _d: None)
    frame = score_accounts(con, None, when, scorer, history=store, progress=report)
    scored = frame.scores
    report("writing", 0.0)
    outcome = None
    if len(scored):
        probabilities = {label: dict(zip(frame.account_ids, frame.probabilities[label],
                                         strict=True))
                         for label in frame.probabilities.columns}
        # Through the service's outbox: the daily job fires the same events and alerts as the
        # API, in the same transaction as the scores, and a re-run adds none twice.
        outcome = record_daily(store.engine, scored, scorer.rules, serving_cfg,
                               churn=frame.longest("churn"),
                               also=lambda s: write_probabilities(s, when, probabilities))
    report("writing", 1.0)
    portfolio = None
    if portfolio_cfg is not None:
        report("portfolio", 0.0)
        portfolio = record_portfolio(store.engine, frame, con, portfolio_cfg,
                                     idempotency=f"daily:{when}")
        report("portfolio", 1.0)
    return DayResult(frame, outcome, len(scored), portfolio)


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True)
class RunSummary:
    as_of: date | None
    accounts: int
    failures: int = 0


Clock = Callable[[], datetime]


def run_once(engine: Any, run_date: date, work: Callable[[], RunSummary], *, clock: Clock,
             trigger: str = "schedule", runner: str | None = None,
             lease: timedelta = timedelta(hours=2), job: str = DAILY_JOB,
             once_a_day: bool = True) -> int | None:
    """Run `work` under the job lock and log it; the run's id, or None when another runner
    holds the lock or (with `once_a_day`) the day's run already succeeded.

    A failure of `work` is logged in the run (status failed, the error) and re-raised; the lock
    is released either way."""
    who = runner or runner_name()
    if once_a_day and succeeded_on(engine, job, run_date):
        return None
    if not acquire_lock(engine, job, who, lease, now=clock()):
        logger.info("%s for %s: another runner holds the lock", job, run_date)
        return None
    try:
        # Checked again under the lock: a runner that finished just before we took it.
        if once_a_day and succeeded_on(engine, job, run_date):
            return None
        run_id = start_run(engine, job, run_date, trigger, who, now=clock())
        try:
            summary = work()
        except Exception as exc:
            finish_run(engine, run_id, status="failed", as_of=None, accounts=0, failures=1,
                       error=f"{type(exc).__name__}: {exc}"[:4000], now=clock())
            raise
        finish_run(engine, run_id, status="succeeded", as_of=summary.as_of,
                   accounts=summary.accounts, failures=summary.failures, now=clock())
        return run_id
    finally:
        release_lock(engine, job, who)
