"""Column mappings: how a customer's own export becomes the contract tables, declared in YAML.

A mapping names its source files (relative to the data folder or absolute, glob allowed) and, for
each contract table it connects, where each contract column comes from: a source column or a DuckDB
SQL expression evaluated over the source rows (`coalesce(closed_at, NULL)`, `CASE WHEN ... END`, a
window function for a derived table, a scalar subquery over another source). Value maps translate
codes (`priority: {P1: urgent}`), defaults fill columns the export lacks, `where` filters source
rows, `qualify` filters on window functions, `join` brings in columns of another source and `key`
declares extra uniqueness checks. The file is validated with pydantic before anything runs; errors
name the YAML key.

The expressions are SQL fragments run by DuckDB over views of the source files: no Python is
evaluated, and every query is checked to be one SELECT. Constants (value maps, defaults) are bound
parameters. Without a mapping, `identity_mapping` maps a folder of `<table>.csv|parquet` files
whose columns already carry the contract names. This module compiles and runs the mapping
queries; it never judges the values (that is `features.contract.validate`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.contract.sources import FILE_COL, ROW_COL, SourceInfo
from features.contract.tables import TABLES_BY_NAME, Column
from features.contract.validate import KEY_PREFIX, SOURCE_FILES_ATTR
from features.contract.warehouse import DUCKDB_TYPES

log = logging.getLogger(__name__)

MAPPINGS_DIR = Path(__file__).with_name("mappings")
SOURCE_ALIAS = "src"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MappingError(ValueError):
    """The mapping file is invalid or one of its expressions fails; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceSpec(_Model):
    file: str
    """Path of the file, relative to the data folder (`../exports/events.csv` reaches outside
    it) or absolute; a glob (`exports/usage_*.csv`) reads every match."""
    types: dict[str, str] = Field(default_factory=dict)
    """DuckDB types forcing how CSV columns are read, e.g. `{account_id: VARCHAR}` to keep the
    leading zeros of ids the type sniffer would take for numbers."""
    delimiter: str = ","
    """CSV field separator."""
    all_text: bool = False
    """Read every CSV cell as text (types are then the validator's business)."""

    @field_validator("file")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty file name")
        return v


class JoinSpec(_Model):
    source: str
    """Source joined to the table's main source."""
    as_: str = Field(alias="as")
    """Alias to qualify its columns in expressions (`sub.account_id`)."""
    on: str
    """SQL join condition, e.g. `sub.subscription_id = src.subscription_id`."""
    how: Literal["left", "inner"] = "left"
    """left keeps every row of the main source (an unmatched row shows up as empty columns)."""

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class TableMapping(_Model):
    source: str
    """Name of the source (from `sources`) whose rows become this table's rows."""
    join: tuple[JoinSpec, ...] = ()
    """Other sources joined to it (list of `source`, `as`, `on`, `how`)."""
    columns: dict[str, str | None] = Field(default_factory=dict)
    """Contract column -> source column or SQL expression (null: always empty)."""
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Contract column -> {source value as text: contract value}; unmapped values pass through."""
    defaults: dict[str, Any] = Field(default_factory=dict)
    """Contract column -> constant, for a column the export does not have."""
    attributes: dict[str, str] = Field(default_factory=dict)
    """accounts only: custom attribute name -> source column or expression."""
    key: tuple[str, ...] = ()
    """Source expressions whose combination must be unique (duplicates policy applies)."""
    where: str | None = None
    """SQL condition on source rows, applied before mapping (and before window functions)."""
    qualify: str | None = None
    """SQL condition that may use window functions (DuckDB QUALIFY)."""

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, v: Any) -> Any:
        # YAML reads `yes:`, `1:` or `true:` as non-strings; the source value is matched as text.
        if isinstance(v, dict):
            return {col: ({_as_text(k): m for k, m in inner.items()}
                          if isinstance(inner, dict) else inner) for col, inner in v.items()}
        return v

    @field_validator("columns", "attributes", mode="before")
    @classmethod
    def _expressions_as_text(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (e if e is None or isinstance(e, str) else _literal(e))
                    for k, e in v.items()}
        return v


class Mapping(_Model):
    description: str = ""
    sources: dict[str, SourceSpec]
    tables: dict[str, TableMapping]

    @field_validator("sources", mode="before")
    @classmethod
    def _file_shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({"file": s} if isinstance(s, str) else s) for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Mapping:
        errors: list[str] = []
        for name in self.sources:
            if not _IDENTIFIER.match(name) or name.lower() == SOURCE_ALIAS:
                errors.append(f"sources.{name}: a source name must be a plain identifier "
                              f"(letters, digits, _) other than {SOURCE_ALIAS!r}")
        if not self.tables:
            errors.append("tables: map at least the accounts table")
        for tname, tm in self.tables.items():
            errors += _table_errors(tname, tm, set(self.sources))
        if errors:
            raise ValueError("\n".join(errors))
        return self


def _table_errors(tname: str, tm: TableMapping, sources: set[str]) -> list[str]:
    at = f"tables.{tname}"
    if tname not in TABLES_BY_NAME:
        return [f"{at}: not a contract table (known: {', '.join(TABLES_BY_NAME)})"]
    spec = TABLES_BY_NAME[tname]
    errors = []
    if tm.source not in sources:
        errors.append(f"{at}.source: unknown source {tm.source!r} (declared: "
                      f"{', '.join(sorted(sources)) or 'none'})")
    for i, j in enumerate(tm.join):
        if j.source not in sources:
            errors.append(f"{at}.join[{i}].source: unknown source {j.source!r}")
        if not _IDENTIFIER.match(j.as_) or j.as_ == SOURCE_ALIAS:
            errors.append(f"{at}.join[{i}].as: {j.as_!r} must be an identifier other than "
                          f"{SOURCE_ALIAS!r}")
    for section in ("columns", "values", "defaults"):
        for col in getattr(tm, section):
            if col not in spec.column_names:
                errors.append(f"{at}.{section}.{col}: not a column of {tname} (columns: "
                              f"{', '.join(spec.column_names)})")
    for col in set(tm.columns) & set(tm.defaults):
        errors.append(f"{at}.defaults.{col}: also mapped in columns; keep one")
    for col in tm.values:
        if col not in tm.columns:
            errors.append(f"{at}.values.{col}: a value map needs the column in columns")
    if tm.attributes and not spec.extra_columns_allowed:
        errors.append(f"{at}.attributes: only accounts has custom attributes")
    for attr in tm.attributes:
        if attr in spec.column_names or attr.startswith("__") or not attr.strip():
            errors.append(f"{at}.attributes.{attr}: name clashes with a contract or internal "
                          "column")
    for col in spec.columns:
        if col.required and col.default is None and col.name not in tm.columns \
                and col.name not in tm.defaults:
            errors.append(f"{at}.columns.{col.name}: required by the contract but not mapped")
    return errors


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _literal(value: Any) -> str:
    """A YAML constant written where an expression is expected, as a SQL literal."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _format_pydantic(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        for part in msg.splitlines():
            lines.append(f"{source}: {loc + ': ' if loc else ''}{part}")
    return "invalid mapping\n" + "\n".join(lines)


def parse_mapping(data: Any, source: str = "mapping") -> Mapping:
    if not isinstance(data, dict):
        raise MappingError(f"{source}: expected a mapping with `sources` and `tables`")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise MappingError(_format_pydantic(source, exc)) from None


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate a mapping YAML; a bare name (`ravenstack`) means a packaged mapping."""
    path = Path(path)
    if not path.exists() and path.parent == Path(".") and path.suffix == "":
        path = MAPPINGS_DIR / f"{path.name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} not found") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    return parse_mapping(data, str(path))


# --- the folder of contract files --------------------------------------------------------------
def identity_mapping(files: dict[str, list[Path]], columns: dict[str, tuple[str, ...]]
                     ) -> tuple[Mapping, dict[str, list[str]]]:
    """Mapping for files already in the contract format (`<table>.csv|parquet`).

    Header names match contract names ignoring case and surrounding blanks. Returns the mapping
    and, per table, the file columns it ignores (not in the contract; accounts keeps them as
    custom attributes instead).
    """
    sources = {name: SourceSpec(file=paths[0].name, all_text=True)
               for name, paths in files.items()}
    tables: dict[str, TableMapping] = {}
    ignored: dict[str, list[str]] = {}
    for name in files:
        spec = TABLES_BY_NAME[name]
        cols: dict[str, str | None] = {}
        attrs: dict[str, str] = {}
        for raw in columns[name]:
            norm = raw.strip().lower()
            if norm in spec.column_names and norm not in cols:
                cols[norm] = quote(raw)
            elif spec.extra_columns_allowed and raw.strip() and not raw.startswith("__"):
                attrs[raw.strip()] = quote(raw)
            else:
                ignored.setdefault(name, []).append(raw)
        tables[name] = TableMapping.model_construct(
            source=name, join=(), columns=cols, values={}, defaults={}, attributes=attrs,
            key=(), where=None, qualify=None)
    return Mapping.model_construct(description="", sources=sources, tables=tables), ignored


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# --- compiling and running -------------------------------------------------------------------
def _cast_for(col: Column, expr: str) -> str:
    # Text columns are cast in SQL so ids typed as numbers by the sniffer read back exactly.
    return f"CAST(({expr}) AS VARCHAR)" if col.type == "string" else f"({expr})"


def compile_table(name: str, tm: TableMapping, *, with_file: bool = True
                  ) -> tuple[list[tuple[str, str]], list[Any], str]:
    """The SELECT items (YAML key, SQL), their bound parameters, and the FROM ... JOIN clause.

    `with_file=False` leaves out `__file` (a one-file source: no need to repeat its name on
    millions of rows).
    """
    spec = TABLES_BY_NAME[name]
    items: list[tuple[str, str]] = []
    params: list[Any] = []
    for col in spec.columns:
        key = f"tables.{name}.columns.{col.name}"
        if col.name in tm.columns:
            expr = tm.columns[col.name] or "NULL"
            if col.name in tm.values:
                cases = []
                for src_value, value in tm.values[col.name].items():
                    cases.append("WHEN ? THEN CAST(? AS VARCHAR)")
                    params += [src_value, None if value is None else _as_text(value)]
                text = f"CAST(({expr}) AS VARCHAR)"
                expr = f"CASE {text} {' '.join(cases)} ELSE {text} END"
            items.append((key, f"{_cast_for(col, expr)} AS {quote(col.name)}"))
        elif col.name in tm.defaults:
            items.append((f"tables.{name}.defaults.{col.name}",
                          f"CAST(? AS {DUCKDB_TYPES[col.type]}) AS {quote(col.name)}"))
            value = tm.defaults[col.name]
            params.append(_as_text(value) if col.type == "string" and value is not None
                          else value)
    for attr, expr in tm.attributes.items():
        items.append((f"tables.{name}.attributes.{attr}", f"({expr}) AS {quote(attr)}"))
    for i, expr in enumerate(tm.key):
        items.append((f"tables.{name}.key[{i}]",
                      f"CAST(({expr}) AS VARCHAR) AS {quote(KEY_PREFIX + expr)}"))
    if with_file:
        items.append(("", f"{SOURCE_ALIAS}.{FILE_COL} AS {FILE_COL}"))
    items.append(("", f"CAST({SOURCE_ALIAS}.{ROW_COL} AS BIGINT) AS {ROW_COL}"))
    from_clause = f"FROM {quote(tm.source)} AS {SOURCE_ALIAS}"
    for j in tm.join:
        from_clause += f" {j.how.upper()} JOIN {quote(j.source)} AS {quote(j.as_)} ON ({j.on})"
    return items, params, from_clause


def _query(items: list[tuple[str, str]], from_clause: str, tm: TableMapping) -> str:
    sql = f"SELECT {', '.join(item for _, item in items)} {from_clause}"
    if tm.where:
        sql += f" WHERE ({tm.where})"
    if tm.qualify:
        sql += f" QUALIFY ({tm.qualify})"
    return sql


def _one_select(con: duckdb.DuckDBPyConnection, sql: str, where: str) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise MappingError(f"mapping {where}: not valid SQL: {_first_line(exc)}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise MappingError(f"mapping {where}: an expression must not contain other SQL "
                           "statements")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]


def _locate_error(con: duckdb.DuckDBPyConnection, name: str, tm: TableMapping,
                  items: list[tuple[str, str]], params: list[Any], from_clause: str) -> str:
    """Which YAML key broke the query: try each expression on its own, then each clause."""
    offset = 0
    for key, item in items:
        n = item.count("?")
        try:
            con.execute(f"SELECT {item} {from_clause} LIMIT 0", params[offset:offset + n])
        except duckdb.Error as exc:
            return f"{key or f'tables.{name}.join'}: {_first_line(exc)}"
        offset += n
    for clause, sql in (("where", f"WHERE ({tm.where})"), ("qualify", f"QUALIFY ({tm.qualify})")):
        if getattr(tm, clause):
            try:
                con.execute(f"SELECT 1 {from_clause} {sql} LIMIT 0")
            except duckdb.Error as exc:
                return f"tables.{name}.{clause}: {_first_line(exc)}"
    return f"tables.{name}"


def _nullable_dtype(kind: pa.DataType) -> object:
    """Integers and booleans with gaps stay integers and booleans (not floats and objects)."""
    if pa.types.is_integer(kind):
        return pd.Int64Dtype()
    if pa.types.is_boolean(kind):
        return pd.BooleanDtype()
    return None


def stream_table(con: duckdb.DuckDBPyConnection, name: str, tm: TableMapping,
                 sources: dict[str, SourceInfo], chunk_rows: int = 500_000
                 ) -> Iterator[pd.DataFrame]:
    """Evaluate one table's mapping over the registered source views, `chunk_rows` rows at a
    time: DuckDB runs the query (joins, windows and subqueries spill to disk as needed) and
    hands the result over in Arrow batches, so the mapped table is never whole in memory.
    Each chunk carries `__file` as the data folder shows it and `__row` as a line or row number.
    At least one chunk (possibly empty) is yielded."""
    info = sources.get(tm.source)
    single = info.files[0] if info is not None and len(info.files) == 1 else None
    items, params, from_clause = compile_table(name, tm, with_file=single is None)
    sql = _query(items, from_clause, tm)
    _one_select(con, sql, f"tables.{name}")
    shown: dict[str, str] = {}
    for other in sources.values():
        shown.update(other.shown)

    def failed(exc: duckdb.Error) -> MappingError:
        where = _locate_error(con, name, tm, items, params, from_clause)
        if where == f"tables.{name}":
            where += f": {_first_line(exc)}"
        files = ", ".join(info.files) if info is not None else tm.source
        return MappingError(f"mapping {where} (source {tm.source}: {files})")

    try:
        reader = con.sql(sql, params=params).to_arrow_reader(min(chunk_rows, 1_000_000))
    except duckdb.Error as exc:
        raise failed(exc) from None
    pending: list[pa.RecordBatch] = []
    held = 0
    done = False
    yielded = False
    while not done:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            done = True
        except duckdb.Error as exc:
            raise failed(exc) from None
        else:
            pending.append(batch)
            held += batch.num_rows
        if pending and (held >= chunk_rows or done) and (held or not yielded):
            table = pa.Table.from_batches(pending)
            pending, held = [], 0
            yield _frame(table, single, shown, info)
            yielded = True
    if not yielded:
        yield _frame(reader.schema.empty_table(), single, shown, info)


def _frame(arrow: pa.Table, single: str | None, shown: dict[str, str],
           info: SourceInfo | None) -> pd.DataFrame:
    # Through Arrow: faster than .df() for text columns (no Python strings).
    frame = arrow.to_pandas(types_mapper=_nullable_dtype, date_as_object=False,
                            self_destruct=True, split_blocks=True)
    del arrow
    if single is not None:
        frame[FILE_COL] = pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8),
                                                    categories=[single])
    else:
        # A handful of distinct paths over many rows: rename the categories, not the rows.
        files = frame[FILE_COL].astype("category")
        frame[FILE_COL] = files.cat.rename_categories(
            [shown.get(f, f) for f in files.cat.categories])
    if info is not None:
        if info.lines and len(frame):
            frame[ROW_COL] = info.line_numbers(frame[FILE_COL].to_numpy(dtype=object),
                                               frame[ROW_COL].to_numpy(dtype=np.int64))
        frame.attrs[SOURCE_FILES_ATTR] = list(info.files)
    return frame


def run_table(con: duckdb.DuckDBPyConnection, name: str, tm: TableMapping,
              sources: dict[str, SourceInfo]) -> pd.DataFrame:
    """One table's mapping as a whole frame (for small inputs and benches; ingest streams)."""
    chunks = list(stream_table(con, name, tm, sources, chunk_rows=1 << 62))
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    frame.attrs = chunks[0].attrs
    return frame


def run_mapping(con: duckdb.DuckDBPyConnection, mapping: Mapping,
                sources: dict[str, SourceInfo],
                progress: Callable[[str], None] | None = None) -> dict[str, pd.DataFrame]:
    """Every mapped contract table as a raw frame (contract names, `__file`, `__row`)."""
    frames = {}
    for name in TABLES_BY_NAME:
        if name in mapping.tables:
            frames[name] = run_table(con, name, mapping.tables[name], sources)
            log.info("mapped %s: %d rows", name, len(frames[name]))
            if progress is not None:
                progress(name)
    return frames
