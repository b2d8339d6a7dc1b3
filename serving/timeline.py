"""An account's engagement timeline: what happened, day by day, in the window before its as-of
date (logins, tickets, surveys, touchpoints, invoices), read from the warehouse snapshot.

Only rows strictly before the as-of date are read, as every feature of that date does. A table
that is not connected is left out. It counts and lists raw rows: no score, no feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from features.contract.warehouse import connected_tables
from serving.state import ServiceState

MAX_ITEMS = 200
"""Most recent dated items (tickets, surveys, touchpoints, invoices) listed."""


@dataclass(frozen=True)
class Timeline:
    start: date
    end: date
    logins: list[tuple[date, int]]
    """Distinct users active per day (as `logins_30d` counts them: one per user-day)."""
    items: list[dict[str, Any]]
    """Dated rows, newest first: kind, day, text."""


_ITEMS: dict[str, str] = {
    "tickets": "select created_at as ts, 'ticket' as kind, "
               "concat(coalesce(priority, ''), ' priority', "
               "case when escalated then ', escalated' else '' end, "
               "case when resolved_at is null or resolved_at >= ? then ', open' "
               "else ', resolved' end) as text "
               "from tickets where account_id = ? and created_at >= ? and created_at < ?",
    "surveys": "select ts, 'survey' as kind, concat(kind, ' ', cast(score as varchar)) as text "
               "from surveys where account_id = ? and ts >= ? and ts < ?",
    "touchpoints": "select ts, 'touchpoint' as kind, concat(kind, ' (', "
                   "coalesce(direction, ''), case when executive then ', executive' else '' "
                   "end, case when responded then ', answered' else '' end, ')') as text "
                   "from touchpoints where account_id = ? and ts >= ? and ts < ?",
    "invoices": "select issued_at as ts, 'invoice' as kind, concat(cast(round(amount, 2) as "
                "varchar), ' ', case when paid_at is not null and paid_at < ? then 'paid' "
                "when due_at < ? then 'overdue' else 'due' end) as text "
                "from invoices where account_id = ? and issued_at >= ? and issued_at < ?",
}


def timeline(state: ServiceState, account_id: str, as_of: date, days: int) -> Timeline:
    state.known(account_id)
    start = as_of - timedelta(days=days)
    con = state.snapshot.cursor()
    try:
        connected = connected_tables(con)
        logins: list[tuple[date, int]] = []
        if "usage_events" in connected:
            logins = [(r[0], int(r[1])) for r in con.execute(
                "select cast(ts as date) as day, count(distinct user_id) from usage_events "
                "where account_id = ? and ts >= ? and ts < ? group by 1 order by 1",
                [account_id, start, as_of]).fetchall()]
        items: list[dict[str, Any]] = []
        for table, sql in _ITEMS.items():
            if table not in connected:
                continue
            window = [account_id, start, as_of]
            params = [as_of, *window] if table == "tickets" else \
                [as_of, as_of, *window] if table == "invoices" else window
            for ts, kind, text in con.execute(sql, params).fetchall():
                items.append({"day": ts.date() if hasattr(ts, "date") else ts, "kind": kind,
                              "text": text})
    finally:
        con.close()
    items.sort(key=lambda r: r["day"], reverse=True)
    return Timeline(start=start, end=as_of, logins=logins, items=items[:MAX_ITEMS])
