"""Small hand-made input folders for the ingestion tests: three accounts and a few rows per
table, written as a customer would (CSV with CRLF line ends and Python-style booleans, or
Parquet)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

NOW = datetime(2025, 1, 1, tzinfo=UTC)
"""The ingest clock of the tests: every fixture row is dated before it."""


def good_tables() -> dict[str, pd.DataFrame]:
    accounts = pd.DataFrame({
        "account_id": ["A1", "A2", "A3"],
        "name": ["Acme", "Globex", "Initech"],
        "segment": ["enterprise", "smb", "mid-market"],
        "industry": ["FinTech", None, "EdTech"],
        "region": ["EU", "US", None],
        "plan": ["Pro", "Basic", "Pro"],
        "seats": [120, 5, 30],
        "arr": [120000.0, 3000.0, None],
        "created_at": ["2023-01-15", "2023-06-01", "2024-02-10 09:30:00"],
        "owner": ["ana", None, "bo"],
        "csm_tier": ["gold", "bronze", "silver"],
    })
    subscriptions = pd.DataFrame({
        "account_id": ["A1", "A2", "A3"],
        "subscription_id": ["S1", "S2", "S3"],
        "start_date": ["2023-01-15", "2023-06-01", "2024-02-10"],
        "end_date": ["2026-01-15", None, "2025-02-10"],  # a contract end may lie ahead
        "arr": [120000, 3000, 20000],
        "seats": [120, 5, 30],
        "status": ["active", "active", "trial"],
        "auto_renew": ["True", "False", None],
    })
    usage = pd.DataFrame({
        "account_id": ["A1", "A1", "A2", "A3", "A3"],
        "user_id": ["u1", "u2", "u3", "u4", "u4"],
        "ts": ["2024-03-01 10:00:00", "2024-03-02 11:00:00", "2024-03-02 12:00:00",
               "2024-03-03 08:00:00", "2024-03-04T08:00:00Z"],
        "event": ["login", "report.export", "login", "login", "login"],
        "quantity": [1, 3, 1, 2, 1],
    })
    tickets = pd.DataFrame({
        "account_id": ["A1", "A2", "A2", "A3"],
        "ticket_id": ["T1", "T2", "T3", "T4"],
        "created_at": ["2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04"],
        "resolved_at": ["2024-04-02", None, "2024-04-05", None],
        "priority": ["high", "urgent", "low", "normal"],
        "escalated": ["True", "false", "1", "yes"],
        "csat": [4.0, None, 5.0, None],
    })
    churn = pd.DataFrame({"account_id": ["A2"], "churned_at": ["2024-06-30"],
                          "reason": ["budget"]})
    return {"accounts": accounts, "subscriptions": subscriptions, "usage_events": usage,
            "tickets": tickets, "churn_events": churn}


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """CSV the way many exports look: CRLF line ends, empty cells for missing values."""
    frame.to_csv(path, index=False, lineterminator="\r\n")
    return path


def write_folder(folder: Path, tables: dict[str, pd.DataFrame],
                 parquet: tuple[str, ...] = ("usage_events",)) -> Path:
    """One file per table: Parquet for the names in `parquet`, CSV for the others."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if name in parquet:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            write_csv(frame, folder / f"{name}.csv")
    return folder


def table_contents(path: Path) -> dict[str, list[tuple]]:
    """Every table of a warehouse file, rows sorted, for before/after comparisons."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables order by 1").fetchall()]
        return {n: sorted(con.execute(f'select * from "{n}"').fetchall(), key=repr)
                for n in names}
    finally:
        con.close()
