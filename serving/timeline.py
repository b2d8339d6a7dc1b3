"""An account's engagement timeline: what happened, day by day, in the window before its as-of
date (logins, tickets, surveys, touchpoints, invoices), read from the warehouse snapshot.

Only rows strictly before the as-of date are read, as every feature of that date does. A table
that is not connected is left out. The rows come from the copy the online feature path holds in
memory by account (`features.build.held_rows`: a slice, no scan of a table of millions of
events), else from the snapshot by a query (the daily users of every account in one pass, kept
per snapshot). It counts and lists raw rows: no score, no feature.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from features.build import held_rows
from features.contract.warehouse import connected_tables
from serving.state import ServiceState

MAX_ITEMS = 200
"""Most recent dated items (tickets, surveys, touchpoints, invoices) listed."""
TIME_COLUMNS = {"usage_events": "ts", "tickets": "created_at", "surveys": "ts",
                "touchpoints": "ts", "invoices": "issued_at"}
_CAST = re.compile(r"^CAST\(CAST\((\w+) AS \w+\) AS \w+\)$")


@dataclass(frozen=True)
class Timeline:
    start: date
    end: date
    logins: list[tuple[date, int]]
    """Distinct users active per day (as `logins_30d` counts them: one per user-day)."""
    items: list[dict[str, Any]]
    """Dated rows, newest first: kind, day, text."""


def timeline(state: ServiceState, account_id: str, as_of: date, days: int) -> Timeline:
    state.known(account_id)
    start = as_of - timedelta(days=days)
    since, before = f"{start} 00:00:00", f"{as_of} 00:00:00"
    con = state.snapshot.connection()
    connected = connected_tables(con)
    held = held_rows(con)
    rows = {name: [r for r in _rows(con, name, account_id)
                   if since <= (r.get(col) or "") < before]
            for name, col in TIME_COLUMNS.items() if name in connected
            and (name != "usage_events" or held is not None)}
    logins: list[tuple[date, int]] = []
    if "usage_events" in rows:
        users: dict[str, set[str]] = defaultdict(set)
        for r in rows["usage_events"]:
            users[r["ts"][:10]].add(str(r.get("user_id")))
        logins = sorted((date.fromisoformat(d), len(u)) for d, u in users.items())
    elif "usage_events" in connected:
        key = ("daily-users", state.snapshot.generation, as_of, days)
        logins = state.derive(key, lambda: _daily_users(con, start, as_of)).get(account_id, [])
    items = [item for name in ("tickets", "surveys", "touchpoints", "invoices")
             for r in rows.get(name, []) for item in [_item(name, r, before)]]
    items.sort(key=lambda r: r["day"], reverse=True)
    return Timeline(start=start, end=as_of, logins=logins, items=items[:MAX_ITEMS])


def _daily_users(con: Any, start: date, end: date) -> dict[str, list[tuple[date, int]]]:
    """Every account's active users per day in the window, in one pass over the events: a
    warehouse too large to hold in memory is scanned once per snapshot, not once per page."""
    out: dict[str, list[tuple[date, int]]] = defaultdict(list)
    with con.cursor() as cur:
        for account, day, n in cur.execute(
                "select account_id, cast(ts as date) as day, count(distinct user_id) "
                "from usage_events where ts >= ? and ts < ? group by 1, 2 order by 1, 2",
                [start, end]).fetchall():
            out[str(account)].append((day, int(n)))
    return dict(out)


def _rows(con: Any, table: str, account_id: str) -> list[dict[str, Any]]:
    """The account's rows of `table`, timestamps as `YYYY-MM-DD HH:MM:SS` text."""
    held = held_rows(con)
    part = held.tables.get(table) if held is not None else None
    if part is not None:
        span = part.ranges.get(account_id)
        if span is None:
            return []
        names = [m.group(1) if (m := _CAST.match(c)) else c for c in part.rows.column_names]
        sliced = part.rows.slice(span[0], span[1] - span[0])
        return [dict(zip(names, r.values(), strict=True)) for r in sliced.to_pylist()]
    with con.cursor() as cur:
        got = cur.execute(f'select * from "{table}" where account_id = ?', [account_id])
        names = [d[0] for d in got.description]
        return [{k: (str(v) if hasattr(v, "isoformat") else v)
                 for k, v in zip(names, r, strict=True)} for r in got.fetchall()]


def _item(table: str, r: dict[str, Any], before: str) -> dict[str, Any]:
    day = date.fromisoformat(str(r[TIME_COLUMNS[table]])[:10])
    if table == "tickets":
        open_ = not r.get("resolved_at") or str(r["resolved_at"]) >= before
        text = (f"{r.get('priority') or ''} priority"
                + (", escalated" if r.get("escalated") else "")
                + (", open" if open_ else ", resolved"))
        return {"day": day, "kind": "ticket", "text": text}
    if table == "surveys":
        return {"day": day, "kind": "survey", "text": f"{r.get('kind')} {r.get('score')}"}
    if table == "touchpoints":
        bits = [str(r.get("direction") or "")] + (["executive"] if r.get("executive") else []) \
            + (["answered"] if r.get("responded") else [])
        return {"day": day, "kind": "touchpoint",
                "text": f"{r.get('kind')} ({', '.join(b for b in bits if b)})"}
    paid = r.get("paid_at") and str(r["paid_at"]) < before
    overdue = not paid and r.get("due_at") and str(r["due_at"]) < before
    amount = r.get("amount")
    money = f"{amount:,.2f} " if isinstance(amount, (int, float)) else ""
    return {"day": day, "kind": "invoice",
            "text": money + ("paid" if paid else "overdue" if overdue else "due")}
