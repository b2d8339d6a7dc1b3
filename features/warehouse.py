"""The embedded DuckDB warehouse: opening it, and knowing which contract tables are connected.

Tables carry the contract names (`accounts`, `usage_events`, ...). A table that is absent is
"not connected". Ingestion is the only writer; everything else opens it read-only.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from features.contract import TABLES

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


def connected_tables(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Contract tables present in the warehouse."""
    # The catalog functions rather than information_schema (the same tables and views, in any
    # catalog's `main` schema): about 4x cheaper, and the online path calls this per request.
    present = {r[0] for r in con.execute(
        "select table_name from duckdb_tables() where schema_name = 'main' "
        "union all select view_name from duckdb_views() where schema_name = 'main' "
        "and not internal"
    ).fetchall()}
    return frozenset(t.name for t in TABLES if t.name in present)


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        name: con.execute(f'select count(*) from "{name}"').fetchone()[0]  # type: ignore[index]
        for name in sorted(connected_tables(con))
    }


def load_frames(con: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> None:
    """Create one table per frame, as is: no validation, no transaction.

    For trusted, already contract-shaped data only (a generated world in tests and benches);
    everything a customer provides goes through `features.ingest`.
    """
    for name, frame in tables.items():
        con.register("_incoming", frame)
        try:
            con.execute(f'create table "{name}" as select * from _incoming')
        finally:
            con.unregister("_incoming")
