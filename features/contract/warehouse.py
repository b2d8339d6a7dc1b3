"""The embedded DuckDB warehouse: opening it, and knowing which contract tables are connected.

Tables carry the contract names (`accounts`, `usage_events`, ...). A table that is absent is
"not connected". Ingestion is the only writer; everything else opens it read-only.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import duckdb
import pandas as pd

from features.contract.tables import TABLES

DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
    "timestamp": "TIMESTAMP",
}
"""Warehouse column type of each contract column type (ingestion creates tables with them)."""


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file (":memory:" for a throwaway one)."""
    if str(path) != ":memory:":
        path = Path(path)
        if read_only and not path.exists():
            raise FileNotFoundError(
                f"warehouse {path} does not exist: run `healthscore ingest DIR` first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


T = TypeVar("T")
_MEMOS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, object]] = (
    weakref.WeakKeyDictionary())
_MEMOS_LOCK = threading.RLock()


def catalog_read(con: duckdb.DuckDBPyConnection, key: str, read: Callable[[], T]) -> T:
    """`read()` of the catalog, remembered per connection when its warehouse is read-only.

    A read-only database cannot gain, lose or alter a table while it is open (the service's
    warehouse snapshots are read-only; a new snapshot is a new connection), so what its catalog
    says is read once per connection: on the online path each catalog read is a DuckDB
    statement with its fixed cost, for an answer that cannot have changed (bench/RESULTS.md).
    A writable warehouse is read every time (ingestion, or a test, may replace tables between
    calls)."""
    memo = _memo(con)
    if not memo["read_only"]:
        return read()
    if key not in memo:
        # The first read runs on the caller's connection, which the service's request threads
        # share: DuckDB refuses a second call on a busy connection instead of waiting.
        with _MEMOS_LOCK:
            if key not in memo:
                memo[key] = read()
    return memo[key]  # type: ignore[return-value]


def remembered(con: duckdb.DuckDBPyConnection, key: str) -> object | None:
    """What `catalog_read` remembers under `key` for a read-only connection (None: nothing),
    without reading anything."""
    memo = _memo(con)
    return memo.get(key) if memo["read_only"] else None


def is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """The connection's warehouse is read-only (asked once per connection)."""
    return bool(_memo(con)["read_only"])


def _memo(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    with _MEMOS_LOCK:
        memo = _MEMOS.get(con)
        if memo is None:  # asked under the lock: the connection may be shared (see above)
            rows = con.execute("select readonly from duckdb_databases() "
                               "where database_name = current_database()").fetchall()
            memo = _MEMOS.setdefault(con, {"read_only": bool(rows and rows[0][0])})
    return memo


def connected_tables(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Contract tables present in the warehouse."""
    # The catalog functions rather than information_schema (the same tables and views, in any
    # catalog's `main` schema): much cheaper, and the online path calls this per request.
    def read() -> frozenset[str]:
        present = {r[0] for r in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'main' "
            "union all select view_name from duckdb_views() where schema_name = 'main' "
            "and not internal"
        ).fetchall()}
        return frozenset(t.name for t in TABLES if t.name in present)

    return catalog_read(con, "connected", read)


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        name: con.execute(f'select count(*) from "{name}"').fetchone()[0]  # type: ignore[index]
        for name in sorted(connected_tables(con))
    }


def load_frames(con: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> None:
    """Create one table per frame, as is: no validation, no transaction.

    For trusted, already contract-shaped data only (a generated world in tests and benches);
    everything a customer provides goes through `features.contract.ingest`.
    """
    for name, frame in tables.items():
        con.register("_incoming", frame)
        try:
            con.execute(f'create table "{name}" as select * from _incoming')
        finally:
            con.unregister("_incoming")


def data_end(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The exclusive end of observed data: midnight after the latest dated row in any table."""
    connected = connected_tables(con)
    parts = [
        f'select max("{t.time_column}") as m from "{t.name}"'
        for t in TABLES
        if t.time_column and t.name in connected
    ]
    if not parts:
        raise ValueError("the warehouse has no dated table: cannot tell where the data ends")
    (latest,) = con.execute(f"select max(m) from ({' union all '.join(parts)})").fetchall()[0]
    if latest is None:
        raise ValueError("the warehouse's dated tables are empty: cannot tell where the data ends")
    return pd.Timestamp(latest).normalize() + pd.Timedelta(days=1)


def today(con: duckdb.DuckDBPyConnection, *, clock: date | None = None) -> date:
    """The as-of date of "now" for this warehouse: what every command, endpoint and job uses when
    the caller names no date.

    It is the day after the last day the warehouse has data for (`data_end`), so a warehouse of
    past data (a demo world, an export from last quarter) is scored as of the day its data ends,
    never in a future it knows nothing of; but never later than the wall clock's today (`clock`,
    for tests), so live data is not scored on a day whose events are still arriving. A warehouse
    with no dated rows at all is as of the wall clock's today.
    """
    try:
        end: date | None = data_end(con).date()
    except ValueError:
        end = None
    return today_from_end(end, clock)


def today_from_end(end: date | None, clock: date | None = None) -> date:
    """`today`'s rule given the end of the data (None: no dated rows), for any engine."""
    wall = clock or date.today()
    return wall if end is None else min(end, wall)
