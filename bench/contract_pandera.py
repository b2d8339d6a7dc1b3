"""The contract's per-cell checks as pandera schemas, generated from `features.contract.tables`.

This is the library version `bench_contract_checks.py` measures against the hand-written checks
of `features.contract.validate`; the product keeps the hand-written ones because this was slower
(figures in bench/RESULTS.md and at the code). It is kept runnable so the claim can be re-checked
whenever pandera or the contract changes.

One `DataFrameSchema` per table, built from the contract (never written out by hand). It runs on
the typed frame, after `validate.parse_column`: the parse is the contract's reading of a cell
(yes/no spellings, blanks as empty, ISO offsets to naive UTC), which pandera's coercion does not
reproduce. Every check carries the report's problem text as its pandera `error`, so lazy
validation's `failure_cases` map straight onto report problems: `index` is the row position (the
raw frame's `__file`/`__row` sit at the same position), `column` the column, `check` the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.config import ValidationDepth, config_context

from features.contract import validate as v
from features.contract.tables import Column, Table

KINDS = ("empty", "allowed", "range", "future")
"""The check kinds a schema can hold; a schema with one kind measures that kind alone."""
EMPTY = "empty value"
_NOT_NULLABLE = "not_nullable"
"""pandera's name, in `failure_cases.check`, for an empty cell in a non-nullable column."""


def allowed_problem(col: Column) -> str:
    return f"not one of {', '.join(col.allowed or ())}"


def future_problem(now: pd.Timestamp) -> str:
    return f"in the future (after {now:%Y-%m-%d %H:%M} UTC)"


def may_not_lie_ahead(table: str, col: Column) -> bool:
    return col.type in ("date", "timestamp") and (table, col.name) not in v.FUTURE_ALLOWED


def column_problems(table: str, col: Column, now: pd.Timestamp) -> list[str]:
    """The problems a schema can report for `col`, in the order validate's report lists them."""
    out = [] if col.nullable else [EMPTY]
    if col.allowed is not None:
        out.append(allowed_problem(col))
    if col.type in ("int", "float"):
        out += [f"below minimum {col.min:g}"] if col.min is not None else []
        out += [f"above maximum {col.max:g}"] if col.max is not None else []
    if may_not_lie_ahead(table, col):
        out.append(future_problem(now))
    return out


def _checks(table: str, col: Column, now: pd.Timestamp, kinds: Collection[str]) -> list[pa.Check]:
    checks = []
    if "allowed" in kinds and col.allowed is not None:
        # The typed frame holds allowed values lower-cased: "Active" is "active".
        checks.append(pa.Check.isin([a.lower() for a in col.allowed], error=allowed_problem(col)))
    if "range" in kinds and col.type in ("int", "float"):
        if col.min is not None:
            checks.append(pa.Check.ge(col.min, error=f"below minimum {col.min:g}"))
        if col.max is not None:
            checks.append(pa.Check.le(col.max, error=f"above maximum {col.max:g}"))
    if "future" in kinds and may_not_lie_ahead(table, col):
        checks.append(pa.Check.le(now, error=future_problem(now)))
    return checks


def table_schema(spec: Table, now: pd.Timestamp, columns: Iterable[str] | None = None,
                 kinds: Collection[str] = KINDS) -> pa.DataFrameSchema:
    """The schema of `spec`, for `columns` only when given (a column absent from the file is
    reported once as missing, not once per row as empty). No dtypes: the parse has set them."""
    wanted = set(spec.column_names if columns is None else columns)
    out = {}
    for col in spec.columns:
        if col.name not in wanted:
            continue
        checks = _checks(spec.name, col, now, kinds)
        nullable = col.nullable or "empty" not in kinds
        if checks or not nullable:
            out[col.name] = pa.Column(checks=checks, nullable=nullable, name=col.name)
    return pa.DataFrameSchema(out, name=spec.name)


def failures(schema: pa.DataFrameSchema, frame: pd.DataFrame,
             ) -> dict[tuple[str, str], np.ndarray]:
    """(column, problem) -> ascending row positions of `frame` (a RangeIndex) failing `schema`.

    Validation is forced on whatever PANDERA_VALIDATION_* says: the contract is not optional.
    """
    try:
        with config_context(validation_enabled=True,
                            validation_depth=ValidationDepth.SCHEMA_AND_DATA):
            schema.validate(frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        return _by_problem(exc.failure_cases)
    return {}


def _by_problem(cases: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    if cases["index"].isna().any():
        # A check that could not run (not a failing row): a bug here, never bad input.
        raise RuntimeError(f"contract schema could not check:\n{cases[cases['index'].isna()]}")
    out = {}
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        problem = EMPTY if check == _NOT_NULLABLE else str(check)
        out[(str(column), problem)] = np.unique(group["index"].to_numpy(dtype=np.int64))
    return out


def check_columns(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, now: pd.Timestamp,
                  out: v._Collector, files: list[str]) -> None:
    """`validate._check_columns` with pandera doing what it can: the same problems, in the same
    order, with the same examples (the bench's "same" column checks it)."""
    name = spec.name
    unparsed: dict[str, pd.Series] = {}
    for col in spec.columns:
        if col.name not in raw:
            typed[col.name] = v._default_column(col, raw.index)
            continue
        values, bad = v.parse_column(raw[col.name], col)
        if col.allowed is not None:
            values = values.astype("str").str.strip().str.lower().where(values.notna())
        typed[col.name] = values
        unparsed[col.name] = bad
    found = failures(table_schema(spec, now, columns=unparsed), typed)
    for col in spec.columns:
        if col.name not in raw:
            if col.required:
                out.add_whole(name, col.name, "missing required column", "refused", files)
            continue
        bad = unparsed[col.name].to_numpy()
        out.add(name, col.name, v._TYPE_PROBLEMS.get(col.type, "invalid"), "refused", raw, bad,
                raw[col.name])
        for problem in column_problems(name, col, now):
            rows = found.get((col.name, problem), np.empty(0, dtype=np.int64))
            if problem == EMPTY:
                rows = rows[~bad[rows]]  # an unparseable cell is reported as such, not as empty
            add_rows(out, name, col.name, problem, raw, rows,
                     None if problem == EMPTY else raw[col.name])


def add_rows(out: v._Collector, table: str, column: str, problem: str, raw: pd.DataFrame,
             rows: np.ndarray, values: pd.Series | None = None, action: v.Action = "refused",
             describe: Callable[[np.ndarray], list[str]] | None = None) -> int:
    """`_Collector.add` for row positions (what `failures` gives) rather than a mask."""
    mask = np.zeros(len(raw), dtype=bool)
    mask[rows] = True
    return out.add(table, column, problem, action, raw, mask, values, describe)
