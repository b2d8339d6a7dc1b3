"""Tasks: what a CSM does for an account, by hand or from a playbook; and the `task.due` /
`task.overdue` events.

Writes are audited in the transaction of the change. A task's due and overdue events go through
the outbox with a dedupe key per task and kind, so each fires once however often `fire_due` runs
(the schedule's every tick, each daily run): `task.due` on its due day, `task.overdue` the day
after, for a task neither done nor cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from scoring.playbooks import Playbook, find, task_plan
from serving.errors import NotFound, PayloadError
from serving.operations_store import Task
from serving.ops_store import add_event, audit, utcnow
from serving.schemas.operations import TaskOut, TaskRequest, TaskUpdate

CLOSED = ("done", "cancelled")


def task_out(t: Task) -> TaskOut:
    return TaskOut(id=t.id, accountId=t.account_id, playbook=t.playbook, title=t.title,
                   owner=t.owner, dueDate=t.due_date, status=t.status,  # type: ignore[arg-type]
                   notes=t.notes, createdAt=t.created_at, createdBy=t.created_by,
                   updatedAt=t.updated_at, completedAt=t.completed_at)


def create_tasks(engine: Engine, req: TaskRequest, actor: str, playbooks: Sequence[Playbook],
                 *, today: date, now: datetime | None = None) -> list[TaskOut]:
    """One task, or with `playbook` one per action of it (due `due_days` after `today` unless
    `dueDate` is given)."""
    now = now or utcnow()
    if req.playbook is not None:
        book = find(playbooks, req.playbook)
        if book is None:
            raise PayloadError(["body", "playbook"], f"no playbook named {req.playbook!r}")
        plan = task_plan(book, today)
        if req.title is not None:
            plan = [(req.title, plan[0][1])]
    elif req.title is not None:
        plan = [(req.title, today)]
    else:
        raise PayloadError(["body", "title"], "give a title or a playbook")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        made = []
        for title, due in plan:
            t = Task(account_id=req.accountId, playbook=req.playbook, title=title,
                     owner=req.owner, due_date=req.dueDate or due, status="open",
                     notes=req.notes, created_at=now, created_by=actor, updated_at=now)
            session.add(t)
            made.append(t)
        session.flush()
        for t in made:
            audit(session, actor, "task.created", t.account_id,
                  {"taskId": t.id, "playbook": t.playbook, "title": t.title, "owner": t.owner,
                   "dueDate": str(t.due_date)})
        return [task_out(t) for t in made]


def update_task(engine: Engine, task_id: int, req: TaskUpdate, actor: str,
                *, now: datetime | None = None) -> TaskOut:
    now = now or utcnow()
    changes = req.model_dump(exclude_none=True)
    if not changes:
        raise PayloadError(["body"], "give at least one of status, owner, dueDate, notes")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        t = session.get(Task, task_id)
        if t is None:
            raise NotFound(f"no task {task_id}")
        before = {"status": t.status, "owner": t.owner, "dueDate": str(t.due_date),
                  "notes": t.notes}
        if "status" in changes:
            t.status = changes["status"]
            t.completed_at = now if t.status == "done" else None
        if "owner" in changes:
            t.owner = changes["owner"]
        if "dueDate" in changes:
            t.due_date = changes["dueDate"]
        if "notes" in changes:
            t.notes = changes["notes"]
        t.updated_at = now
        audit(session, actor, "task.updated", t.account_id,
              {"taskId": t.id, "before": before, "changes": changes})
        return task_out(t)


def list_tasks(engine: Engine, *, account_id: str | None = None, status: str | None = None,
               owner: str | None = None, limit: int = 100, offset: int = 0) -> list[TaskOut]:
    stmt = select(Task).order_by(Task.due_date, Task.id).limit(limit).offset(offset)
    if account_id is not None:
        stmt = stmt.where(Task.account_id == account_id)
    if status is not None:
        stmt = stmt.where(Task.status == status)
    if owner is not None:
        stmt = stmt.where(Task.owner == owner)
    with Session(engine, expire_on_commit=False) as session:
        return [task_out(t) for t in session.scalars(stmt)]


def fire_due(engine: Engine, today: date, now: datetime | None = None) -> int:
    """Write `task.due` for open tasks due on or before `today` and `task.overdue` for those due
    before it, each once per task (the outbox's dedupe key); returns the events written."""
    written = 0
    with Session(engine) as session, session.begin():
        rows = session.scalars(select(Task).where(Task.status.not_in(CLOSED),
                                                  Task.due_date <= today)).all()
        for t in rows:
            payload = {"taskId": t.id, "accountId": t.account_id, "title": t.title,
                       "owner": t.owner, "dueDate": str(t.due_date), "playbook": t.playbook}
            kinds = ["task.due"] + (["task.overdue"] if t.due_date < today else [])
            for kind in kinds:
                if add_event(session, kind, t.account_id, payload, now=now,
                             dedupe_key=f"{kind}:{t.id}") is not None:
                    written += 1
    return written
