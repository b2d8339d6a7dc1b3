"""Wire shapes of the portfolio work: playbooks, tasks, the run log and the monitoring."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskStatus = Literal["open", "in_progress", "done", "cancelled"]
AccountId = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$",
                  description="The account's id, as in the warehouse's `accounts` table.")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TaskRequest(_In):
    accountId: str = AccountId
    title: str | None = Field(None, min_length=3, max_length=500,
                              description="What to do; default: each action of `playbook`.")
    playbook: str | None = Field(None, min_length=1, max_length=100,
                                 description="Start this playbook: one task per action.")
    owner: str = Field(min_length=1, max_length=200)
    dueDate: date | None = Field(None, description="Default: the action's due days from today.")
    notes: str = Field("", max_length=4000)


class TaskUpdate(_In):
    status: TaskStatus | None = None
    owner: str | None = Field(None, min_length=1, max_length=200)
    dueDate: date | None = None
    notes: str | None = Field(None, max_length=4000)


class TaskOut(_Out):
    id: int
    accountId: str
    playbook: str | None
    title: str
    owner: str
    dueDate: date
    status: TaskStatus
    notes: str
    createdAt: datetime
    createdBy: str
    updatedAt: datetime
    completedAt: datetime | None = None


class ActionOut(_Out):
    title: str
    dueDays: int


class PlaybookOut(_Out):
    name: str
    title: str
    priority: int
    when: dict[str, list[str]]
    actions: list[ActionOut]


class RunOut(_Out):
    id: int
    job: str
    runDate: date
    asOf: date | None
    trigger: str
    status: str
    runner: str
    startedAt: datetime
    endedAt: datetime | None
    accounts: int
    failures: int
    error: str | None = None


class MonitoringOut(_Out):
    asOf: date | None
    reference: str | None = Field(description="Where the training reference was read from.")
    drift: list[dict[str, Any]] = Field(description="PSI per feature or score and segment.")
    realised: list[dict[str, Any]] = Field(description="ROC AUC, calibration and top-decile "
                                           "lift of each stored label, on matured labels.")
    kpis: dict[str, Any]
    alerts: list[str]
    notes: list[str]
