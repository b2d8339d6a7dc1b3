"""Reading input files (CSV or Parquet) into DuckDB, each row tagged with where it came from.

A source is one or more files (a glob) exposed as a DuckDB view with its own columns plus
`__file` (path relative to the data folder, absolute for a file outside it) and `__row` (the
row as a person finds it: for CSV the physical line number in the file, header on line 1; for
Parquet the 1-based row index). Every
later problem report points at a row through these two columns.

This module does file I/O only: it never interprets columns (that is `features.contract.mapping`)
nor judges values (that is `features.contract.validate`)."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

FILE_COL = "__file"
ROW_COL = "__row"
FORMATS = {".csv": "csv", ".parquet": "parquet"}
_CHUNK = 64 * 1024 * 1024
"""Bytes scanned at a time when numbering CSV lines (bounds the temporary arrays)."""


class SourceError(ValueError):
    """A file cannot be read at all; the message names the file (and the line when known)."""


@dataclass(frozen=True)
class SourceInfo:
    name: str
    files: tuple[str, ...]
    """Paths relative to the data folder."""
    columns: tuple[str, ...]
    rows: int
    shown: dict[str, str]
    """`__file` value as DuckDB reports it -> path relative to the data folder."""


def file_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def relative(path: Path, base: Path) -> str:
    """The path relative to the data folder, or absolute for a file outside it."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --- CSV line numbers ------------------------------------------------------------------------
def _scan_positions(path: Path, byte: int) -> np.ndarray:
    """Offsets of every occurrence of `byte` in the file, scanned in bounded chunks."""
    size = path.stat().st_size
    if size == 0:
        return np.empty(0, dtype=np.int64)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    parts = [np.flatnonzero(data[s:s + _CHUNK] == byte) + s for s in range(0, size, _CHUNK)]
    return np.concatenate(parts).astype(np.int64, copy=False)


def csv_record_lines(path: Path, *, single_column: bool = False) -> np.ndarray:
    """1-based line number where each data record of a CSV starts (header excluded).

    Vectorised: a newline ends a record only when an even number of quote characters precede it
    (quoted fields may hold newlines; an escaped quote `""` keeps the parity). Blank lines are
    skipped the way DuckDB's reader skips them, except in a one-column file where a blank line
    is an empty value.
    """
    size = path.stat().st_size
    if size == 0:
        return np.empty(0, dtype=np.int64)
    all_newlines = _scan_positions(path, ord("\n"))
    quotes = _scan_positions(path, ord('"'))
    newlines = all_newlines
    if len(quotes):
        newlines = all_newlines[np.searchsorted(quotes, all_newlines) % 2 == 0]
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [size]))
    keep = starts < size  # a trailing newline does not open a record
    starts, ends = starts[keep], ends[keep]
    if not single_column:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        length = ends - starts
        lone_cr = (length == 1) & (data[np.minimum(starts, size - 1)] == ord("\r"))
        nonblank = (length > 0) & ~lone_cr
        starts = starts[nonblank]
    lines = np.searchsorted(all_newlines, starts) + 1
    return lines[1:]  # the first record is the header


def _diagnose_csv(path: Path, delimiter: str) -> str:
    """Find the first line whose field count differs from the header's, for a clear error."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return "the file is empty (no header row)"
        start = reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != len(header):
                return (f"line {start}: {len(fields)} fields where the header has "
                        f"{len(header)}")
            start = reader.line_num + 1
    return "DuckDB could not parse it"


# --- reading ---------------------------------------------------------------------------------
def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, shown: str, *, all_varchar: bool,
              types: dict[str, str], delimiter: str) -> pa.Table:
    if path.stat().st_size == 0:
        raise SourceError(f"{shown}: the file is empty (no header row)")
    # skip = 0: otherwise the sniffer may skip leading lines it finds inconsistent.
    options = ("header = true, skip = 0, delim = ?, quote = '\"', sample_size = -1, "
               "all_varchar = ?")
    params: list[object] = [str(path), delimiter, all_varchar]
    if types:
        options += ", types = ?"
        params.append(types)
    try:
        table = con.sql(f"select * from read_csv(?, {options})", params=params).to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise SourceError(f"{shown}: unreadable CSV: {_diagnose_csv(path, delimiter)} "
                          f"({first})") from None
    lines = csv_record_lines(path, single_column=table.num_columns == 1)
    if len(lines) != table.num_rows:
        # An unusual dialect (e.g. a bare \r line end): keep going with a plain count.
        log.warning("%s: could not map rows to line numbers (%d records, %d lines); reporting "
                    "row n as line n+1", shown, table.num_rows, len(lines))
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    table = table.append_column(ROW_COL, pa.array(lines, type=pa.int64()))
    return table.append_column(FILE_COL, pa.array([shown] * table.num_rows, type=pa.string()))


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Stack the files of one source. A column sniffed differently in two files (a bad date
    in one makes it text there) is read as text in all, so the validator sees every value."""
    seen: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            seen.setdefault(f.name, set()).add(f.type)
    mixed = {n for n, kinds in seen.items() if len(kinds - {pa.null()}) > 1}
    if mixed:
        tables = [t.cast(pa.schema(
            [pa.field(f.name, pa.string()) if f.name in mixed else f for f in t.schema]))
            for t in tables]
    return pa.concat_tables(tables, promote_options="permissive")


def register_source(con: duckdb.DuckDBPyConnection, name: str, files: list[Path], base: Path,
                    *, all_varchar: bool = False, types: dict[str, str] | None = None,
                    delimiter: str = ",") -> SourceInfo:
    """Expose `files` (all CSV or all Parquet) as the view `name` with `__file` and `__row`.

    CSV files are read whole with DuckDB's reader (`all_varchar` keeps every cell as text so the
    validator sees exactly what was written; otherwise types are sniffed over the whole file)
    and tagged with their line numbers. Parquet files stay lazy: DuckDB scans them when queried.
    """
    if not files:
        raise SourceError(f"source {name!r}: no files")
    kinds = {file_format(f) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise SourceError(f"source {name!r}: files must be all .csv or all .parquet, got "
                          + ", ".join(relative(f, base) for f in files))
    shown = [relative(f, base) for f in files]
    if kinds == {"parquet"}:
        try:
            rel = con.read_parquet([str(f) for f in files], file_row_number=True, filename=True,
                                   union_by_name=True)
        except duckdb.Error as exc:
            raise SourceError(f"{', '.join(shown)}: unreadable Parquet: "
                              f"{str(exc).splitlines()[0]}") from None
        columns = tuple(c for c in rel.columns if c not in ("file_row_number", "filename"))
        # `filename` is the path as passed; SourceInfo.shown maps it to the relative one.
        rel = rel.project("* exclude (file_row_number, filename), "
                          f"file_row_number + 1 as {ROW_COL}, filename as {FILE_COL}")
        rel.create_view(name, replace=True)
        # fetchall: DuckDB 2 keeps a half-read execute() result open and blocks the connection.
        rows = con.execute(f'select count(*) from "{name}"').fetchall()[0][0]
        return SourceInfo(name, tuple(shown), columns, int(rows),
                          dict(zip((str(f) for f in files), shown, strict=True)))
    tables = [_read_csv(con, f, s, all_varchar=all_varchar, types=types or {},
                        delimiter=delimiter) for f, s in zip(files, shown, strict=True)]
    table = tables[0] if len(tables) == 1 else _concat(tables)
    con.register(name, table)
    columns = tuple(c for c in table.column_names if c not in (ROW_COL, FILE_COL))
    return SourceInfo(name, tuple(shown), columns, table.num_rows, {s: s for s in shown})
