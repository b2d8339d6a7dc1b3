"""Operational tables of the portfolio work, on the score store's `Base`: playbook tasks, the
run log of the daily job, the store-level job lock and the probabilities stored with each
day's scores (created by migration 0005).

The lock is a row per job name: taking it is one INSERT (the primary key refuses a second
holder) or one UPDATE of an expired row, so it is atomic on SQLite and PostgreSQL alike and
needs no advisory-lock extension. A holder that dies leaves a row that expires after its
lease; a finished holder deletes its row. Nothing here decides what a run does
(`serving.daily`) or which tasks are due (`serving.tasks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Date, DateTime, Float, Index, Integer, String, Text, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from serving.ops_store import utcnow
from serving.store import Base

TASK_STATUSES = ("open", "in_progress", "done", "cancelled")


class Task(Base):
    """A recommended action for an account, owned by someone, due on a day."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_account", "account_id"),
                      Index("ix_tasks_status_due", "status", "due_date"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), nullable=False)
    playbook: Mapped[str | None] = mapped_column(String(100))
    """The playbook the task comes from (None for a task made by hand)."""
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    due_date: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobRun(Base):
    """One run of a job (the daily scoring): when, how many accounts, how it ended."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_date", "job", "run_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64), nullable=False)
    run_date: Mapped[date] = mapped_column(Date, nullable=False)
    """The UTC day the run is for: a scheduled run happens once per job and day."""
    as_of: Mapped[date | None] = mapped_column(Date)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    """schedule or manual."""
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    """running, succeeded or failed."""
    runner: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accounts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class JobLock(Base):
    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ProbabilityRecord(Base):
    """A calibrated probability stored with a day's score (what realised AUC is measured on)."""

    __tablename__ = "score_probabilities"
    __table_args__ = (Index("ix_score_probabilities_as_of", "as_of"),)

    account_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    probability: Mapped[float] = mapped_column(Float, nullable=False)


# --- the lock -----------------------------------------------------------------------------------

def acquire_lock(engine: Any, name: str, owner: str, lease: timedelta,
                 now: datetime | None = None) -> bool:
    """Take the job lock `name` for `owner` until now + lease; False when another holds it."""
    now = now or utcnow()
    with Session(engine) as session:
        try:
            with session.begin():
                session.add(JobLock(name=name, owner=owner, acquired_at=now,
                                    expires_at=now + lease))
            return True
        except IntegrityError:
            pass
    with Session(engine) as session, session.begin():
        # An expired holder (a worker killed mid-run) loses the lock to the next one.
        res = session.execute(update(JobLock).where(JobLock.name == name,
                                                    JobLock.expires_at < now)
                              .values(owner=owner, acquired_at=now, expires_at=now + lease))
        return res.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def release_lock(engine: Any, name: str, owner: str) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(JobLock).where(JobLock.name == name, JobLock.owner == owner))


# --- runs -----------------------------------------------------------------------------------

def start_run(engine: Any, job: str, run_date: date, trigger: str, runner: str,
              now: datetime | None = None) -> int:
    with Session(engine) as session, session.begin():
        run = JobRun(job=job, run_date=run_date, trigger=trigger, status="running",
                     runner=runner, started_at=now or utcnow(), accounts=0, failures=0)
        session.add(run)
        session.flush()
        return int(run.id)


def finish_run(engine: Any, run_id: int, *, status: str, as_of: date | None, accounts: int,
               failures: int, error: str | None = None, now: datetime | None = None) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(JobRun).where(JobRun.id == run_id).values(
            status=status, as_of=as_of, accounts=accounts, failures=failures,
            error=error, ended_at=now or utcnow()))


def succeeded_on(engine: Any, job: str, run_date: date) -> bool:
    """Whether a run of `job` for `run_date` already succeeded (a scheduled run is once a day)."""
    with Session(engine) as session:
        return session.scalar(select(JobRun.id).where(
            JobRun.job == job, JobRun.run_date == run_date, JobRun.status == "succeeded")
            .limit(1)) is not None


def list_runs(engine: Any, job: str | None = None, limit: int = 50) -> list[JobRun]:
    stmt = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if job is not None:
        stmt = stmt.where(JobRun.job == job)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(stmt))


# --- probabilities --------------------------------------------------------------------------

def write_probabilities(session: Session, as_of: date,
                        probabilities: Mapping[str, Mapping[str, float]]) -> int:
    """Replace the probabilities of `as_of` ({label: {account: p}}) inside the caller's
    transaction."""
    rows = [{"account_id": a, "as_of": as_of, "label": label, "probability": float(p)}
            for label, by_account in probabilities.items() for a, p in by_account.items()
            if p is not None and not math.isnan(float(p))]
    session.execute(delete(ProbabilityRecord).where(ProbabilityRecord.as_of == as_of))
    if rows:
        session.execute(ProbabilityRecord.__table__.insert(), rows)
    return len(rows)


def load_probabilities(engine: Any) -> pd.DataFrame:
    """Every stored probability: account_id, as_of (Timestamp), label, probability."""
    stmt = select(ProbabilityRecord.account_id, ProbabilityRecord.as_of,
                  ProbabilityRecord.label, ProbabilityRecord.probability)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=["account_id", "as_of", "label", "probability"])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame["probability"] = frame["probability"].astype(float)
    return frame
