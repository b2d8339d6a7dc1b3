"""The feature definitions as DuckDB statements compiled once, their time bounds as parameters.

Building an Ibis expression of `features/definitions.py` and compiling it costs about as much
CPU as DuckDB's work for a few thousand entities (bench/RESULTS.md). What varies from one batch
to the next is only the entity rows (a view of a fixed name, registered on the runner's own
cursor) and the entities' time range, the literal bounds that let the engine skip rows outside
every window before reading them. Here the bounds are statement parameters (`$earliest`,
`$latest`): DuckDB binds a statement's parameters before it optimises it, so a bound is pushed
into the scan as a literal one is, and the SQL is compiled once per warehouse schema and step
(`features/build.py` caches it) instead of once per call.

It defines no feature and runs nothing; `features/build.py` decides what to compile and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.datashape as ds
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import sqlglot.expressions as sge
from ibis.backends.sql.compilers.duckdb import DuckDBCompiler


class Parameter(ops.Scalar):
    """A named statement parameter, `$name` in the SQL, bound when the statement runs."""

    name: str
    dtype: dt.DataType

    shape = ds.scalar


def parameter(name: str, dtype: str) -> ir.Scalar:
    """A scalar expression standing for the statement parameter `name` of type `dtype`."""
    return Parameter(name, dt.dtype(dtype)).to_expr()


class _Compiler(DuckDBCompiler):
    def visit_Parameter(self, op: ops.Node, *, name: str, dtype: dt.DataType) -> sge.Expression:
        return self.cast(sge.Placeholder(this=name), dtype)


_COMPILER = _Compiler()


@dataclass(frozen=True)
class Compiled:
    """DuckDB SQL of an expression and the names of the parameters it reads."""

    sql: str
    parameters: frozenset[str]


def compile_expr(expr: ir.Table) -> Compiled:
    """DuckDB SQL of an Ibis expression whose `parameter`s become `$name` placeholders, its
    common subexpressions read inline."""
    names = frozenset(p.name for p in expr.op().find(Parameter))
    tree = _COMPILER.to_sqlglot(expr)
    # A relation read by several parts of the statement (the restricted usage rows: the
    # user-days, the account-days and the events read them) is compiled as a CTE, which DuckDB
    # 2.0 materialises, buffering every row; read inline, each part scans the table for its own
    # columns with the same pushed-down filters, which costs a large build less.
    for cte in tree.find_all(sge.CTE):
        cte.set("materialized", False)
    sql = tree.sql(dialect="duckdb", copy=False)
    return Compiled(sql, names)
