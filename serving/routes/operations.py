"""The portfolio-work routes: playbooks (reader), tasks (writer to create and update, reader
to list), the run log and the monitoring (reader), the playbook effect (reader)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from serving import operations
from serving.effect import playbook_effect
from serving.monitoring import monitor
from serving.routes.deps import ERRORS, Reader, State, Writer
from serving.schemas.operations import (
    MonitoringOut,
    PlaybookOut,
    RunOut,
    TaskOut,
    TaskRequest,
    TaskStatus,
    TaskUpdate,
)
from serving.tasks import create_tasks, list_tasks, update_task

router = APIRouter(tags=["operations"])
Name = Annotated[str | None, Query(max_length=100)]


@router.get("/playbooks", response_model=list[PlaybookOut], responses=ERRORS)
def playbooks(state: State, _who: Reader) -> list[PlaybookOut]:
    return [operations.playbook_out(p) for p in operations.playbooks_of(state)]


@router.get("/accounts/{account_id}/playbooks", response_model=list[PlaybookOut],
            responses=ERRORS)
def account_playbooks(state: State, _who: Reader,
                      account_id: Annotated[str, Path(min_length=1, max_length=200)],
                      lifecycle: Name = None, tier: Name = None) -> list[PlaybookOut]:
    """The playbooks the account's score of today points at (with its lifecycle stage and
    value tier when given)."""
    return operations.account_playbooks(state, account_id, lifecycle, tier)


@router.post("/tasks", response_model=list[TaskOut], responses=ERRORS)
def create(req: TaskRequest, state: State, who: Writer) -> list[TaskOut]:
    state.known(req.accountId)
    return create_tasks(state.db, req, who.name, operations.playbooks_of(state),
                        today=state.default_as_of)


@router.patch("/tasks/{task_id}", response_model=TaskOut, responses=ERRORS)
def update(task_id: Annotated[int, Path(ge=1, le=2**31 - 1)], req: TaskUpdate, state: State,
           who: Writer) -> TaskOut:
    return update_task(state.db, task_id, req, who.name)


@router.get("/tasks", response_model=list[TaskOut], responses=ERRORS)
def tasks(state: State, _who: Reader,
          accountId: Annotated[str | None, Query(max_length=200)] = None,
          status: TaskStatus | None = None,
          owner: Annotated[str | None, Query(max_length=200)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[TaskOut]:
    return list_tasks(state.db, account_id=accountId, status=status, owner=owner, limit=limit,
                      offset=offset)


@router.get("/runs", response_model=list[RunOut], responses=ERRORS)
def runs(state: State, _who: Reader,
         limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[RunOut]:
    return operations.runs(state, limit)


@router.get("/monitoring", response_model=MonitoringOut, responses=ERRORS)
def monitoring(state: State, _who: Reader) -> MonitoringOut:
    """Drift against the training reference and realised accuracy on matured labels (read
    only: the alerts are raised by the daily run and `healthscore monitor`)."""
    con = state.snapshot.cursor()
    return MonitoringOut(**monitor(state.store, con, state.scorer, state.settings,
                                   raise_alerts=False, scored_at=state.scored_at))


@router.get("/effect", responses=ERRORS)
def effect(state: State, _who: Reader, playbook: Name = None) -> dict[str, Any]:
    """Did it work: completed playbooks against matched untreated accounts."""
    con = state.snapshot.cursor()
    return playbook_effect(state.store, con, state.settings.health, playbook,
                           scored_at=state.scored_at)
