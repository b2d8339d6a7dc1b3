"""Where features are read from: the DuckDB warehouse, the Parquet tables of the input
contract in an in-memory DuckDB, or the same Parquet tables on Spark
(`features.spark_engine.SparkWarehouse`). Every command and the scoring pipeline ask a source
the same three things through this module: which tables are connected, where the small
`accounts`/`churn_events` tables can be queried (a DuckDB connection either way) and what
today is for its data. Spark is imported only when the Spark engine is asked for.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from features.contract.tables import TABLES
from features.contract.warehouse import connect, connected_tables, today
from features.settings import SparkConfig

ENGINES = ("duckdb", "spark")
"""The engines a command can build features with: DuckDB embedded (the default), or Spark."""


def check_engine(engine: str) -> str:
    """`engine` if it is one of ENGINES, else a ValueError naming the choices."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    return engine


def is_spark(source: Any) -> bool:
    return hasattr(source, "driver") and hasattr(source, "feature_runner")


def source_catalog(source: Any) -> tuple[frozenset[str], duckdb.DuckDBPyConnection]:
    """(connected tables, the DuckDB holding accounts and churn_events) of a source: the
    warehouse itself, or a Spark warehouse's tables held on the driver."""
    if is_spark(source):
        return source.connected, source.driver
    return connected_tables(source), source


def source_today(source: Any) -> date:
    """`features.contract.warehouse.today` of a source on any engine."""
    return source.today() if is_spark(source) else today(source)


def open_source(engine: str, *, warehouse: Path, data: str | None, spark: SparkConfig) -> Any:
    """The source a command reads: the DuckDB warehouse (read-only) or, with `data`, the
    Parquet tables there in an in-memory DuckDB; for `spark`, a SparkWarehouse of `data`."""
    check_engine(engine)
    if engine == "spark":
        from features.spark_engine import SparkWarehouse

        return SparkWarehouse(data or warehouse, spark)
    if data is None:
        return connect(warehouse, read_only=True)
    return parquet_duckdb(data)


def parquet_duckdb(data: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per `<table>.parquet` under the folder `data` (a file,
    or a folder of part files as Spark writes): the Spark engine's input, on DuckDB."""
    folder = Path(data)
    if not (folder / "accounts.parquet").exists():
        raise FileNotFoundError(f"{folder / 'accounts.parquet'}: no accounts table in {folder}")
    con = duckdb.connect()
    for spec in TABLES:
        path = folder / f"{spec.name}.parquet"
        if path.exists():
            pattern = str(path / "*.parquet") if path.is_dir() else str(path)
            con.execute(f"create view \"{spec.name}\" as select * from read_parquet('"
                        + pattern.replace("'", "''") + "')")
    return con
