"""The rows of a read-only warehouse held in memory by account, for the online path.

A one-account build fetches the account's rows of seven tables; as DuckDB statements each pays
a fixed cost (parse, bind, optimise, schedule) that outweighs its few hundred rows, a large
part of an explanation (bench/RESULTS.md). A read-only warehouse (the service's snapshot)
cannot change while it is open, so its tables are read once, in the form
`features.sqlite_engine.fetch` hands to SQLite, sorted by account and time, with each account's
row range: an account's rows are then a slice, found by bisection. This module owns that copy
and its lookups, and nothing else: the definitions, the SQL and the bounds' meaning stay in
`features/definitions.py` and `features/sqlite_engine.py` (`fetch_bounds` gives both paths the
same bounds, and the tests check both give the same rows).

Memory: the tables' rows as Arrow arrays, timestamps as text (bench/RESULTS.md);
`FeatureConfig.online_row_index_max_rows` bounds it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import sqlite_engine as se
from features.contract.mapping import quote
from features.contract.tables import table as contract_table


@dataclass(frozen=True)
class _Table:
    rows: pa.Table
    ranges: dict[str, tuple[int, int]]
    """Per account: its first row and one past its last."""
    time_index: int | None
    """Column position of the table's time column (None: the table has none)."""


class AccountRows:
    """Every table of `tables` as `sqlite_engine.fetch` would read it, in memory by account."""

    def __init__(self, shape: se.Shape, tables: dict[str, _Table]) -> None:
        self.shape, self.tables = shape, tables

    @classmethod
    def load(cls, cursor: duckdb.DuckDBPyConnection, shape: se.Shape,
             names: Sequence[str], *, max_rows: int | None = None) -> AccountRows | None:
        """The tables' rows, or None when they hold more than `max_rows` rows in all."""
        columns = dict(shape)
        if max_rows is not None:
            total = sum(cursor.execute(f"SELECT count(*) FROM {quote(n)}").fetchall()[0][0]
                        for n in names)
            if total > max_rows:
                return None
        tables = {}
        for name in names:
            cols = columns[name]
            time_column = contract_table(name).time_column
            order = "account_id" + (f", {quote(time_column)}" if time_column else "")
            select = ", ".join(se.fetch_column(c, t) for c, t in cols)
            rows = cursor.sql(f"SELECT {select} FROM {quote(name)} "
                              f"ORDER BY {order} NULLS LAST").to_arrow_table()
            names_in_order = [c for c, _ in cols]
            tables[name] = _Table(
                rows=rows, ranges=_ranges(rows.column(names_in_order.index("account_id"))),
                time_index=names_in_order.index(time_column) if time_column else None)
        return cls(shape, tables)

    @property
    def nbytes(self) -> int:
        return sum(t.rows.nbytes for t in self.tables.values())

    def fetch(self, tables: Sequence[str], keys: pd.DataFrame, *, older: bool = False
              ) -> dict[str, list[tuple[Any, ...]]]:
        """What `sqlite_engine.fetch` returns for these tables and entity rows."""
        ids = sorted(set(keys["account_id"]))
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name in tables:
            table = self.tables[name]
            since, before = (None if b is None else b.strftime(se.TIME_FORMAT)
                             for b in se.fetch_bounds(name, keys, older))
            found: list[tuple[Any, ...]] = []
            for account in ids:
                span = table.ranges.get(account)
                if span is None:
                    continue
                start, stop = span
                if table.time_index is not None:
                    start, stop = _time_range(table.rows.column(table.time_index), start, stop,
                                              since, before)
                if stop > start:
                    part = table.rows.slice(start, stop - start)
                    found.extend(zip(*(c.to_pylist() for c in part.columns), strict=True))
            out[name] = found
        return out


def _ranges(account_ids: pa.ChunkedArray) -> dict[str, tuple[int, int]]:
    """Each account's row range in a column sorted by account."""
    encoded = pc.dictionary_encode(account_ids).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    if len(codes) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    stops = np.r_[starts[1:], len(codes)]
    names = encoded.dictionary.to_pylist()
    return {names[codes[s]]: (int(s), int(e)) for s, e in zip(starts, stops, strict=True)}


def _time_range(times: pa.ChunkedArray, start: int, stop: int, since: str | None,
                before: str | None) -> tuple[int, int]:
    """The rows of [start, stop) (one account, sorted by time, NULLs last) with
    `since <= time < before`, compared as the text SQLite compares."""
    values = times.slice(start, stop - start)
    known = values.to_pylist()[: len(values) - values.null_count]
    lo = bisect.bisect_left(known, since) if since is not None else 0
    hi = bisect.bisect_left(known, before) if before is not None else len(known)
    return start + lo, start + max(lo, hi)
