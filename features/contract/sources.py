"""Reading input files (CSV or Parquet) as lazy DuckDB views, each row tagged with its origin.

A source is one or more files (a glob) exposed as a DuckDB view with its own columns plus
`__file` (path relative to the data folder, absolute for a file outside it) and `__row` (the
row as a person finds it: for CSV the physical line number in the file, header on line 1; for
Parquet the 1-based row index). Every later problem report points at a row through these two
columns. The views read the files when queried, so a big file is never held whole in memory: the
CSV dialect and types are sniffed once and fixed in the view; a CSV view numbers its records
(`__row` is then the line of a file whose records each hold one line) and
`SourceInfo.line_numbers` turns that into the physical line (quoted line breaks, blank lines),
from a bounded scan of the file's bytes.

This module does file I/O only: it never interprets columns (that is `features.contract.mapping`)
nor judges values (that is `features.contract.validate`)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

log = logging.getLogger(__name__)

FILE_COL = "__file"
ROW_COL = "__row"
FORMATS = {".csv": "csv", ".parquet": "parquet"}
_CHUNK = 16 * 1024 * 1024
"""Bytes scanned at a time when numbering CSV lines (bounds the temporary arrays)."""


class SourceError(ValueError):
    """A file cannot be read at all; the message names the file (and the line when known)."""


@dataclass(frozen=True)
class LineNumbers:
    """Where the records of one CSV file start, compactly: the record at 0-based index i is on
    line i + 2 + delta, delta changing only at the records after a quoted line break or a blank
    line (`at`: the first record index of each new delta)."""

    at: np.ndarray
    delta: np.ndarray
    records: int
    """Data records counted (header excluded)."""

    def lines(self, rows: np.ndarray) -> np.ndarray:
        """Physical lines of the records numbered `rows` (record index + 2, as the view says)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.at):
            return rows
        j = np.searchsorted(self.at, rows - 2, side="right") - 1
        return rows + np.where(j >= 0, self.delta[np.maximum(j, 0)], 0)


@dataclass(frozen=True)
class SourceInfo:
    name: str
    files: tuple[str, ...]
    """Paths relative to the data folder."""
    columns: tuple[str, ...]
    rows: int
    shown: dict[str, str]
    """`__file` value as DuckDB reports it -> path relative to the data folder."""
    lines: dict[str, LineNumbers] = field(default_factory=dict)
    """CSV file (as shown) -> its line numbers; absent: `__row` is already the row."""

    def line_numbers(self, files: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """`__row` values of the view made physical line numbers (`files`: shown names)."""
        if not self.lines:
            return rows
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.lines) == 1:
            ((name, numbers),) = self.lines.items()
            if len(self.files) == 1:
                return numbers.lines(rows)
        out = rows.copy()
        files = np.asarray(files, dtype=object)
        for name, numbers in self.lines.items():
            mask = files == name
            if mask.any():
                out[mask] = numbers.lines(rows[mask])
        return out


def file_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def relative(path: Path, base: Path) -> str:
    """The path relative to the data folder, or absolute for a file outside it."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --- CSV line numbers ------------------------------------------------------------------------
def _record_starts(path: Path, *, single_column: bool) -> Iterator[np.ndarray]:
    """Yield, chunk by chunk, the 1-based line of every non-blank record start (header first).

    Vectorised over bounded chunks read with plain reads (not a memory map: mapped pages of a
    big file would count as the process's memory): a newline ends a record only when an even
    number of quote characters precede it (quoted fields may hold newlines; an escaped quote
    `""` keeps the parity). Blank lines are skipped the way DuckDB's reader skips them, except
    in a one-column file where a blank line is an empty value.
    """
    size = path.stat().st_size
    quotes_before = 0
    newlines_before = 0
    with path.open("rb") as fh:
        for s in range(0, size, _CHUNK):
            fh.seek(s)
            # Two bytes beyond the chunk: a record starting at its end is judged blank or not.
            buf = np.frombuffer(fh.read(_CHUNK + 2), dtype=np.uint8)
            n = min(_CHUNK, size - s)
            body = buf[:n]
            nl = np.flatnonzero(body == ord("\n"))
            q = np.flatnonzero(body == ord('"'))
            ending = nl
            if len(q) or quotes_before % 2:
                ending = nl[(quotes_before + np.searchsorted(q, nl)) % 2 == 0]
            lines = newlines_before + np.searchsorted(nl, ending) + 2
            starts = ending + 1
            if s == 0:
                starts = np.concatenate(([0], starts))
                lines = np.concatenate(([1], lines))
            keep = starts + s < size  # a trailing newline does not open a record
            starts, lines = starts[keep], lines[keep]
            if not single_column and len(starts):
                first = buf[starts]
                second = np.zeros(len(starts), dtype=np.uint8)
                inside = starts + 1 < len(buf)
                second[inside] = buf[starts[inside] + 1]
                at_end = starts + s + 1 >= size
                lone_cr = (first == ord("\r")) & ((second == ord("\n")) | at_end)
                lines = lines[(first != ord("\n")) & ~lone_cr]
            quotes_before += len(q)
            newlines_before += len(nl)
            yield lines


def csv_line_numbers(path: Path, *, single_column: bool = False) -> LineNumbers:
    """The line numbers of a CSV's data records, in the compact form of `LineNumbers`."""
    at: list[np.ndarray] = []
    delta: list[np.ndarray] = []
    seen = -1  # records before the chunk, header excluded
    last = 0
    for lines in _record_starts(path, single_column=single_column):
        index = np.arange(seen, seen + len(lines), dtype=np.int64)
        seen += len(lines)
        if index[:1].tolist() == [-1]:  # the header
            index, lines = index[1:], lines[1:]
        d = lines - index - 2
        change = np.flatnonzero(np.diff(d, prepend=last) != 0)
        if len(change):
            at.append(index[change])
            delta.append(d[change])
            last = int(d[-1])
    empty = np.empty(0, dtype=np.int64)
    return LineNumbers(np.concatenate(at) if at else empty,
                       np.concatenate(delta) if delta else empty, max(seen, 0))


def csv_record_lines(path: Path, *, single_column: bool = False) -> np.ndarray:
    """1-based line number where each data record of a CSV starts (header excluded)."""
    parts = list(_record_starts(path, single_column=single_column))
    lines = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return lines[1:]


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
def _csv_relation(con: duckdb.DuckDBPyConnection, path: Path, shown: str, *, all_varchar: bool,
                  types: dict[str, str], delimiter: str
                  ) -> tuple[duckdb.DuckDBPyRelation, int, LineNumbers | None]:
    """One CSV file as a relation with `__row` and `__file`, its record count and its lines.

    The relation API fixes what the sniffer found (dialect, column types, date formats) in the
    view's definition, so later queries do not sniff again. Types are sniffed over the whole
    file (a late bad date makes the column text, so the validator sees every value); with
    `all_varchar` a sample settles the dialect. A full count checks that every line parses.
    """
    if path.stat().st_size == 0:
        raise SourceError(f"{shown}: the file is empty (no header row)")
    options: dict[str, object] = {"header": True, "skiprows": 0, "sep": delimiter,
                                  "quotechar": '"', "all_varchar": all_varchar}
    if not all_varchar:
        options["sample_size"] = -1
    if types:
        options["dtype"] = types
    try:
        rel = con.read_csv(str(path), **options)  # type: ignore[arg-type]
        rows = int(rel.aggregate("count(*)").fetchall()[0][0])
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise SourceError(f"{shown}: unreadable CSV: {_diagnose_csv(path, delimiter)} "
                          f"({first})") from None
    numbers: LineNumbers | None = csv_line_numbers(path, single_column=len(rel.columns) == 1)
    if numbers is not None and numbers.records != rows:
        # An unusual dialect (e.g. a bare \r line end): keep going with a plain count.
        log.warning("%s: could not map rows to line numbers (%d records, %d lines); reporting "
                    "row n as line n+1", shown, rows, numbers.records)
        numbers = None
    # row_number() over the bare scan: DuckDB keeps a plain scan in file order, and the
    # window without partition or order streams.
    rel = rel.project(f"*, row_number() OVER () + 1 AS {ROW_COL}").project(
        duckdb.StarExpression(), duckdb.ConstantExpression(shown).alias(FILE_COL))
    return rel, rows, numbers


def _union(con: duckdb.DuckDBPyConnection, name: str,
           parts: list[duckdb.DuckDBPyRelation]) -> None:
    """Stack the files of one source as the view `name`. A column sniffed differently in two
    files (a bad date in one makes it text there) is read as text in all, so the validator sees
    every value; a column missing from a file is empty there."""
    seen: dict[str, set[str]] = {}
    order: list[str] = []
    for rel in parts:
        for col, kind in zip(rel.columns, rel.types, strict=True):
            if col not in seen:
                order.append(col)
            seen.setdefault(col, set()).add(str(kind))
    mixed = {c for c, kinds in seen.items() if len(kinds - {'"NULL"', "NULL"}) > 1}
    for i, rel in enumerate(parts):
        rel.create_view(f"{name}__{i}", replace=True)
    selects = []
    for i, rel in enumerate(parts):
        present = set(rel.columns)
        items = []
        for col in order:
            ref = _quote(col)
            ctype = "VARCHAR" if col in mixed else next(iter(seen[col]))
            items.append(f"CAST({ref} AS {ctype}) AS {ref}" if col in present and col in mixed
                         else ref if col in present else f"CAST(NULL AS {ctype}) AS {ref}")
        selects.append(f"SELECT {', '.join(items)} FROM {_quote(f'{name}__{i}')}")
    con.execute(f"CREATE OR REPLACE VIEW {_quote(name)} AS {' UNION ALL '.join(selects)}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def register_source(con: duckdb.DuckDBPyConnection, name: str, files: list[Path], base: Path,
                    *, all_varchar: bool = False, types: dict[str, str] | None = None,
                    delimiter: str = ",") -> SourceInfo:
    """Expose `files` (all CSV or all Parquet) as the view `name` with `__file` and `__row`.

    Nothing is loaded: the view reads the files when queried. For CSV `all_varchar` keeps every
    cell as text so the validator sees exactly what was written; otherwise types are sniffed
    over the whole file.
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
    parts, total, lines = [], 0, {}
    for f, s in zip(files, shown, strict=True):
        rel, rows, numbers = _csv_relation(con, f, s, all_varchar=all_varchar,
                                           types=types or {}, delimiter=delimiter)
        parts.append(rel)
        total += rows
        if numbers is not None:
            lines[s] = numbers
    if len(parts) == 1:
        parts[0].create_view(name, replace=True)
    else:
        _union(con, name, parts)
    columns = tuple(c for c in parts[0].columns if c not in (ROW_COL, FILE_COL))
    if len(parts) > 1:
        columns = tuple(dict.fromkeys(c for p in parts for c in p.columns
                                      if c not in (ROW_COL, FILE_COL)))
    return SourceInfo(name, tuple(shown), columns, total, {s: s for s in shown}, lines)
