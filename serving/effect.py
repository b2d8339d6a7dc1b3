"""Did it work: the effect of completed playbooks, read from the store and the warehouse.

Thin I/O around `scoring.effect`: the treated accounts are those with a completed task of a
playbook, each starting at the latest stored score date on or before the task was created; the
candidates are the accounts with no playbook task at all, scored that same date. The matching
inputs are the score's inputs as stored (the score, its seven dimensions and its flags) and the
contract's timing at the start date (`scoring.effect.CONTRACT`: point-in-time features of the
portfolio the pipeline scores as of that date); the outcomes are churn within
`health.effect_horizon_days` (warehouse churn events; unknown while the window is still open)
and the score change over the same days (stored scores).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import duckdb
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from features.contract.warehouse import today
from scoring.effect import EXACT, MATCH_ON, effect_units, estimate_effect
from scoring.pipeline import ScoredFrame
from serving.monitoring import outcome_events
from serving.operations_store import Task
from serving.store import ScoreStore


def treated_starts(store: ScoreStore, playbook: str | None = None) -> tuple[pd.DataFrame,
                                                                          set[str]]:
    """(account_id, as_of) of each completed playbook's start, and every account with any
    playbook task (never a control)."""
    with Session(store.engine) as session:
        rows = session.execute(select(Task.account_id, Task.playbook, Task.status,
                                      Task.created_at).where(Task.playbook.is_not(None))).all()
    tasks = pd.DataFrame(rows, columns=["account_id", "playbook", "status", "created_at"])
    touched = set(tasks["account_id"])
    done = tasks[tasks["status"] == "done"]
    if playbook is not None:
        done = done[done["playbook"] == playbook]
    dates = pd.Series(sorted(store.dates()), dtype="datetime64[ns]")
    out = []
    for account, group in done.groupby("account_id"):
        created = pd.Timestamp(pd.to_datetime(group["created_at"]).min()).tz_localize(None) \
            if pd.to_datetime(group["created_at"]).min().tzinfo else \
            pd.Timestamp(pd.to_datetime(group["created_at"]).min())
        before = dates[dates <= created.normalize()]
        if len(before):
            out.append((str(account), before.iloc[-1]))
    return pd.DataFrame(out, columns=["account_id", "as_of"]), touched


def playbook_effect(store: ScoreStore, con: duckdb.DuckDBPyConnection, health: Any,
                    playbook: str | None = None, *,
                    scored_at: Callable[[date], ScoredFrame]) -> dict[str, Any]:
    """The effect estimates; `scored_at(date)`: the portfolio the pipeline scores as of a date
    (its features give the contract's timing at each start date)."""
    starts, touched = treated_starts(store, playbook)
    if starts.empty:
        return {"playbook": playbook, "estimates": [],
                "warnings": ["no completed playbook with a stored score at its start"]}
    scores = store.load_scores()
    features = pd.concat([scored_at(pd.Timestamp(d).date()).features
                          for d in sorted(set(starts["as_of"]))], ignore_index=True)
    units = effect_units(scores, starts, outcome_events(con, "churn"),
                         pd.Timestamp(today(con)), health.effect_horizon_days,
                         untreated=set(scores["account_id"]) - touched, features=features)
    estimates = [estimate_effect(units, list(MATCH_ON), outcome, caliper=health.effect_caliper,
                                 min_pairs=health.effect_min_pairs,
                                 bootstraps=health.effect_bootstraps, exact=EXACT,
                                 neighbours=health.effect_neighbours)
                 .as_dict() for outcome in ("churned", "score_change")]
    return {"playbook": playbook, "horizonDays": health.effect_horizon_days,
            "estimates": estimates, "warnings": []}
