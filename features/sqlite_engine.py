"""The feature definitions on SQLite, for a few entities at a time (the online path).

DuckDB 2.0 binds and optimises a statement again on every execution, prepared or not: for the
one-account statement that fixed work, plus the fixed cost of each of its hundreds of operators,
outweighs reading a few hundred rows. The same Ibis definitions compiled for SQLite run over one
account's rows in a fraction of that time (bench/RESULTS.md). This module owns that path:
compiling an Ibis expression of `features/definitions.py` for SQLite (with the two rules Ibis
12's SQLite compiler lacks for a SQLite before 3.46), fetching the entities' rows from the
warehouse (one small DuckDB statement per table, within the bounds `fetch_bounds` gives;
`features/account_rows.py` serves the same rows from memory for a long-lived reader), loading
them into a scratch in-memory SQLite database of the calling thread, and running the compiled
SQL there.

It defines no feature (definitions.py does; `features/build.py` decides which entity frames take
this path) and never writes to the warehouse. DuckDB stays the one store: the scratch database
holds one call's rows, rolled back before the call returns.

How values cross over, so that SQLite computes what DuckDB computes:
- Timestamps and dates become text `YYYY-MM-DD HH:MM:SS[.f]` (DuckDB's own text form), which
  sorts as the instants do; dates are declared as timestamps to the compiler, so `.date()` and
  comparisons see one form. Day arithmetic is on as-of midnights only (definitions.py), where
  SQLite's `datetime(x, '-N day')` is exact.
- Booleans become 0/1, decimals and integers too wide for SQLite become doubles; any other
  type is handed over as its text.
"""

from __future__ import annotations

import functools
import sqlite3
import statistics
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.backends.sql.compilers.sqlite import SQLiteCompiler
from ibis.backends.sql.datatypes import DuckDBType
from ibis.backends.sqlite.udf import register_all

from features import definitions as d
from features.contract.mapping import quote
from features.contract.tables import table as contract_table

Shape = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""The warehouse tables a compiled query reads, with their columns' DuckDB types."""

MEDIAN = "_healthscore_median"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""An as-of midnight as text: what DuckDB's cast of a midnight timestamp to text gives."""


class _Compiler(SQLiteCompiler):
    """Ibis's SQLite compiler with the two rules the definitions need and Ibis 12 refuses on a
    SQLite before 3.46: day arithmetic, and a median (an aggregate registered below)."""

    UNSUPPORTED_OPS = tuple(op for op in SQLiteCompiler.UNSUPPORTED_OPS if op is not ops.Median)

    def visit_DateArithmetic(self, op: ops.Node, *, left: Any, right: Any) -> Any:
        unit = op.right.dtype.unit  # type: ignore[attr-defined]
        if unit.singular != "day":
            raise NotImplementedError(f"SQLite feature SQL: {unit.singular} arithmetic")
        sign = "+" if isinstance(op, (ops.DateAdd, ops.TimestampAdd)) else "-"
        shift = self.f.concat(sign, self.cast(right.this, dt.string), " day")
        if isinstance(op, (ops.TimestampAdd, ops.TimestampSub)):
            # Whole seconds: exact for the as-of midnights the definitions shift.
            return self.f.datetime(left, shift)
        return self.f.date(left, shift)

    visit_TimestampAdd = visit_TimestampSub = visit_DateAdd = visit_DateSub = (
        visit_DateArithmetic
    )

    def visit_Median(self, op: ops.Node, *, arg: Any, where: Any) -> Any:
        return self.agg[MEDIAN](arg, where=where)


_COMPILER = _Compiler()


@dataclass(frozen=True)
class Compiled:
    """SQLite SQL of an expression, and which of its columns are numbers (SQLite returns a
    one-row column of NULL or int as Python objects; they are handed back as float64)."""

    sql: str
    numeric: frozenset[str]


def compile_expr(expr: ir.Table) -> Compiled:
    """SQLite SQL of an Ibis expression over tables typed with `ibis_type`."""
    schema = expr.schema()
    numeric = frozenset(n for n, t in schema.items() if t.is_numeric() or t.is_boolean())
    return Compiled(_COMPILER.to_sqlglot(expr).sql(dialect="sqlite"), numeric)


def ibis_type(duckdb_type: str) -> dt.DataType:
    """The type the compiler is told a warehouse column has: what it holds in SQLite."""
    t = DuckDBType.from_string(duckdb_type)
    if t.is_temporal():
        return dt.Timestamp(nullable=t.nullable)
    if t.is_decimal() or t.is_uint64() or (t.is_integer() and t.nbytes > 8):
        return dt.Float64(nullable=t.nullable)
    if t.is_numeric() or t.is_boolean() or t.is_string():
        return t
    return dt.String(nullable=t.nullable)


def fetch_column(column: str, duckdb_type: str) -> str:
    """The DuckDB select expression handing one column over in its SQLite form."""
    ident = quote(column)
    t = ibis_type(duckdb_type)
    source = DuckDBType.from_string(duckdb_type)
    if t.is_timestamp():
        return f"CAST(CAST({ident} AS TIMESTAMP) AS VARCHAR)"
    if t.is_float64() and not source.is_floating():
        return f"CAST({ident} AS DOUBLE)"
    if t.is_string() and not source.is_string():
        return f"CAST({ident} AS VARCHAR)"
    return ident


def fetch_bounds(table: str, keys: pd.DataFrame, older: bool
                 ) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """`(since, before)`: the rows of `table` any entity row can see are those with
    `since <= time < before` (None: no bound), the bounds `definitions.restrict` applies,
    taken before fetching. `older`: usage's rows before its lookback (the days-since
    fallback). As-of dates are midnights, so are the bounds."""
    if contract_table(table).time_column is None:
        return None, None
    latest, earliest = keys["as_of"].max(), keys["as_of"].min()
    if older:
        return None, latest - pd.Timedelta(days=d.USAGE_LOOKBACK_DAYS)
    spec = d.SOURCE_BY_TABLE.get(table)
    if spec is None or spec.lookback_days is None:
        return None, latest
    return earliest - pd.Timedelta(days=spec.lookback_days), latest


@functools.lru_cache(maxsize=256)
def _fetch_sql(columns: tuple[tuple[str, str], ...], table: str, since: bool,
               before: bool) -> str:
    """DuckDB SQL for the rows of one table the entities can see. Parameters: `$ids` (the
    accounts) and the time bounds `$since`, `$before` the table has (`fetch_bounds`). One
    statement per table: a UNION of all of them is slower, its rows padded to every table's
    columns."""
    select = ", ".join(fetch_column(c, t) for c, t in columns)
    sql = f"SELECT {select} FROM {quote(table)} WHERE list_contains($ids::VARCHAR[], account_id)"
    time_column = contract_table(table).time_column
    if time_column is not None and since:
        sql += f" AND {quote(time_column)} >= $since::TIMESTAMP"
    if time_column is not None and before:
        sql += f" AND {quote(time_column)} < $before::TIMESTAMP"
    return sql


def fetch(cursor: duckdb.DuckDBPyConnection, shape: Shape, tables: Sequence[str],
          keys: pd.DataFrame, *, older: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of `tables` the entity rows `keys` can see, per table, as SQLite values.

    Half of the tables are read on a second cursor in a thread of their own: each statement
    is mostly DuckDB's fixed work, outside the GIL, so two at a time take less wall time for
    the same CPU."""
    ids = sorted(set(keys["account_id"]))
    columns = dict(shape)

    def read(on: duckdb.DuckDBPyConnection, names: Sequence[str]
             ) -> dict[str, list[tuple[Any, ...]]]:
        out = {}
        for table in names:
            since, before = fetch_bounds(table, keys, older)
            sql = _fetch_sql(columns[table], table, since is not None, before is not None)
            params: dict[str, Any] = {"ids": ids}
            if since is not None:
                params["since"] = since.to_pydatetime()
            if before is not None:
                params["before"] = before.to_pydatetime()
            out[table] = on.execute(sql, params).fetchall()
        return out

    if len(tables) < 2:
        return read(cursor, tables)
    mine, theirs = list(tables[::2]), list(tables[1::2])
    result: dict[str, list[tuple[Any, ...]]] = {}
    failed: list[BaseException] = []
    with cursor.cursor() as other:
        def work() -> None:
            try:
                result.update(read(other, theirs))
            except BaseException as exc:  # raised in the caller's thread below
                failed.append(exc)

        thread = threading.Thread(target=work, name="healthscore-fetch", daemon=True)
        thread.start()
        try:
            result.update(read(cursor, mine))
        finally:
            thread.join()
    if failed:
        raise failed[0]
    return {t: result[t] for t in tables}


class _Median:
    """SQLite aggregate: the median of the non-null values (DuckDB's `median`: the mean of the
    two middle values for an even count)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: Any, /) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def _sqlite_type(t: dt.DataType) -> str:
    if t.is_floating():
        return "REAL"
    if t.is_integer() or t.is_boolean():
        return "INTEGER"
    return "TEXT"


class Scratch:
    """A thread's in-memory SQLite database with the warehouse tables of one shape (empty
    between calls) and the entity table."""

    def __init__(self, shape: Shape, entity_table: str) -> None:
        self.shape, self.entity_table = shape, entity_table
        self.con = sqlite3.connect(":memory:", isolation_level=None)
        # Sorts and materialised subqueries in memory, not in temporary files (a large part of
        # a one-account query's time).
        self.con.execute("PRAGMA temp_store = MEMORY")
        register_all(self.con)
        # typeshed types an aggregate's result as int only; the median returns floats.
        self.con.create_aggregate(MEDIAN, 1, _Median)  # type: ignore[arg-type]
        self.insert: dict[str, str] = {}
        for table, columns in shape:
            cols = ", ".join(f"{quote(c)} {_sqlite_type(ibis_type(t))}" for c, t in columns)
            self.con.execute(f"CREATE TABLE {quote(table)} ({cols})")
            self.insert[table] = (f"INSERT INTO {quote(table)} VALUES "
                                  f"({', '.join('?' * len(columns))})")
        self.con.execute(f"CREATE TABLE {quote(entity_table)} "
                         f"({quote(d.ENTITY_KEY)} INTEGER, account_id TEXT, as_of TEXT)")

    def run(self, query: Compiled, rows: dict[str, list[tuple[Any, ...]]],
            keys: pd.DataFrame) -> dict[str, np.ndarray]:
        """`query` over these rows and entity rows, in one transaction that leaves nothing:
        its columns, numbers as float64 with NaN, the rest as arrays of objects."""
        con = self.con
        entity_rows = zip(keys[d.ENTITY_KEY].tolist(), keys["account_id"].tolist(),
                          [t.strftime(TIME_FORMAT) for t in keys["as_of"]], strict=True)
        con.execute("BEGIN")
        try:
            for table, values in rows.items():
                con.executemany(self.insert[table], values)
            con.executemany(f"INSERT INTO {quote(self.entity_table)} VALUES (?, ?, ?)",
                            entity_rows)
            cursor = con.execute(query.sql)
            names = [c[0] for c in cursor.description]
            result = cursor.fetchall()
        finally:
            con.execute("ROLLBACK")
        columns = list(zip(*result, strict=True)) if result else [()] * len(names)
        out: dict[str, np.ndarray] = {}
        for name, column in zip(names, columns, strict=True):
            if name == d.ENTITY_KEY:
                out[name] = np.array(column, dtype=np.int64)
            elif name in query.numeric:
                out[name] = np.array([np.nan if v is None else v for v in column],
                                     dtype="float64")
            else:
                texts = np.empty(len(column), dtype=object)
                texts[:] = column
                out[name] = texts
        return out


_LOCAL = threading.local()


def scratch(shape: Shape, entity_table: str) -> Scratch:
    """The calling thread's scratch database for `shape` (SQLite connections stay in their
    thread; one per thread, rebuilt when the warehouse's schema changes)."""
    current: Scratch | None = getattr(_LOCAL, "scratch", None)
    if current is None or current.shape != shape or current.entity_table != entity_table:
        if current is not None:
            current.con.close()
        current = _LOCAL.scratch = Scratch(shape, entity_table)
    return current


def tables_read(shape: Shape, names: Iterable[str]) -> list[str]:
    """The tables of `names` present in `shape`, in shape order."""
    wanted = set(names)
    return [t for t, _ in shape if t in wanted]
