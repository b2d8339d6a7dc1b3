"""Validation of input tables against the contract: chunks in, staged typed rows and a report out.

No files, no warehouse: tables arrive as chunks of raw frames (`Validation.add`), in contract
order, each holding contract columns (by contract name, as text or already typed), for `accounts`
any extra columns (custom attributes), and the provenance columns `__file` and `__row` (see
`features.contract.sources`) so that every problem names the file, the row as a person finds it,
the column, the problem and the value. Optional `__key:<name>` columns are extra uniqueness keys
declared by a mapping (e.g. RavenStack's `usage_id`, which the contract does not carry). The
per-cell checks run chunk by chunk; the typed rows go to a DuckDB staging connection the caller
provides, where the checks across rows run in SQL, so a table of any size is checked in bounded
memory. `validate_tables` runs the same on whole frames over an in-memory DuckDB.

Fatal problems (unparseable values, empty required cells, values outside the allowed set or
range, unknown account ids, timestamps in the future, a missing required column) refuse the load.
Data-quality problems a business lives with are handled by the policies of `IngestConfig`
(drop / keep / fail): repeated keys, events dated before the account's signup, usage before the
account's first subscription, a churn-flag attribute disagreeing with churn_events. Everything is
counted per (table, column, problem) with the first `max_examples` examples.

The checks are hand-written rather than pandera's: pandera was slower, several times so once rows
fail, and for types and keys it finds other problems than the contract means
(`bench/bench_contract_checks.py`; figures in bench/RESULTS.md and at each check;
`bench/contract_pandera.py` is the pandera version, generated from the contract).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract.settings import IngestConfig, Policy
from features.contract.tables import TABLES, TABLES_BY_NAME, Column, Table
from features.contract.warehouse import DUCKDB_TYPES

log = logging.getLogger(__name__)

FILE_COL = "__file"
ROW_COL = "__row"
KEY_PREFIX = "__key:"
SOURCE_FILES_ATTR = "source_files"
"""`frame.attrs` entry listing the files a frame was read from (for whole-file problems)."""

Action = Literal["refused", "dropped", "kept", "blanked", "ignored"]

BOOL_TOKENS = {"true": True, "t": True, "yes": True, "y": True, "1": True,
               "false": False, "f": False, "no": False, "n": False, "0": False}
FUTURE_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("subscriptions", "end_date"), ("invoices", "due_at"),
})
"""Timestamps that are plans rather than facts (a contract end, a due date) may lie ahead."""
PAST_CHECK_EXEMPT_TABLES = frozenset({"accounts"})
"""Tables whose time column is not an event compared with the account's signup."""

_TYPE_PROBLEMS = {"int": "not an integer", "float": "not a number", "bool": "not a boolean",
                  "date": "not a date", "timestamp": "not a timestamp"}


# --- the report ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    file: str
    row: int | None
    """1-based row as a person finds it (CSV: line number); None for whole-file problems."""
    value: str | None


@dataclass
class Problem:
    table: str
    column: str
    problem: str
    action: Action
    count: int
    examples: list[Example] = field(default_factory=list)
    rows: list[Example] = field(default_factory=list, repr=False, compare=False)
    """Every row of the problem, up to `ingest.problems_file_rows` (the problems file lists them;
    the report shows `examples`)."""

    @property
    def fatal(self) -> bool:
        return self.action == "refused"

    def describe(self) -> str:
        where = "; ".join(
            f"{e.file}" + (f" row {e.row}" if e.row is not None else "")
            + (f" value {e.value!r}" if e.value is not None else "") for e in self.examples)
        col = f".{self.column}" if self.column else ""
        return f"{self.table}{col}: {self.problem} ({self.count}, {self.action}): {where}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    def counts(self) -> dict[tuple[str, str, str], int]:
        return {(p.table, p.column, p.problem): p.count for p in self.problems}

    def find(self, table: str, column: str | None = None, problem: str | None = None,
             ) -> list[Problem]:
        return [p for p in self.problems if p.table == table
                and (column is None or p.column == column)
                and (problem is None or problem in p.problem)]


@dataclass
class ValidationResult:
    tables: dict[str, pd.DataFrame]
    """Typed frames: contract columns in contract order (accounts: then custom attributes)."""
    report: ValidationReport


# --- value parsing ---------------------------------------------------------------------------
def _is_texty(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def _blank(s: pd.Series) -> pd.Series:
    """Missing cells: nulls, and for text empty or whitespace-only strings."""
    missing = s.isna()
    if _is_texty(s):
        missing |= s.astype("str").str.strip().eq("").fillna(False).astype(bool)
    return missing.fillna(True).astype(bool)


def _as_text(s: pd.Series) -> pd.Series:
    """Any column as trimmed text (for display, and for parsing text-like input)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.map(lambda v: None if pd.isna(v) else ("true" if v else "false")).astype("str")
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy(dtype=float, na_value=np.nan)
        integral = np.isfinite(vals) & (np.floor(vals) == vals)
        # 12.0 reads back as "12": floats often carry integers that had a missing value.
        as_int = np.nan_to_num(vals).astype(np.int64).astype(str)
        out = pd.Series(np.where(integral, as_int, s.astype("str").to_numpy()), index=s.index,
                        dtype="str")
        return out.where(s.notna())
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s.dt.strftime("%Y-%m-%d %H:%M:%S").str.replace(" 00:00:00", "", regex=False)
    text = s.astype("str")
    stripped = text.str.strip()
    # Keep the original array when nothing needed trimming: big text columns are not copied.
    return text if stripped.equals(text) else stripped.where(s.notna())


def _unless(values: pd.Series, mask: pd.Series) -> pd.Series:
    """`values` emptied where `mask` holds (no copy when it holds nowhere)."""
    return values.where(~mask) if mask.any() else values


def _parse_timestamp(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s
    else:
        out = pd.to_datetime(_as_text(s), format="ISO8601", utc=True, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[us]")


def _parse_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.nan, index=s.index)  # a boolean is not a number here
    if pd.api.types.is_numeric_dtype(s.dtype):
        out = s.astype("float64")
    else:
        out = pd.to_numeric(_as_text(s), errors="coerce").astype("float64")
    return out.where(np.isfinite(out.to_numpy(dtype=float, na_value=np.nan)))


def _parse_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean")
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.astype("float64")
        return vals.map({1.0: True, 0.0: False}).astype("boolean")
    return _as_text(s).str.lower().map(BOOL_TOKENS).astype("boolean")


# hand-written: pandera's coercion (Column(dtype, coerce=True)) refused all 183,438 boolean cells
# of the CSV world (even "true"/"false") and gives ns UTC-aware times; on the Parquet world it
# took 0.50 s vs 0.28 s for 3.2M rows (bench/bench_contract_checks.py).
def parse_column(raw: pd.Series, column: Column) -> tuple[pd.Series, pd.Series]:
    """Typed values and the mask of cells that are present but do not parse."""
    if column.type == "string":
        text = _as_text(raw)
        blank = (text.isna() | text.eq("")).fillna(True).astype(bool)
        return _unless(text, blank).astype("str"), pd.Series(False, index=raw.index)
    blank = _blank(raw)
    present = _unless(raw, blank)
    if column.type in ("date", "timestamp"):
        typed = _parse_timestamp(present)
        if column.type == "date":
            typed = typed.dt.normalize()
    elif column.type in ("int", "float"):
        typed = _parse_number(present)
        if column.type == "int":
            vals = typed.to_numpy(dtype=float, na_value=np.nan)
            typed = typed.where(np.floor(vals) == vals)
            typed = typed.round().astype("Int64")
    else:
        typed = _parse_bool(present)
    bad = (~blank & typed.isna()).astype(bool)
    return _unless(typed, bad), bad


_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


def infer_attribute(raw: pd.Series) -> pd.Series:
    """A custom attribute keeps its type: numbers stay numeric, yes/no columns become booleans,
    ISO dates (`2024-05-01`, with or without a time) become timestamps (features read them as
    days since the date), everything else is text."""
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype) \
            or pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return raw
    blank = _blank(raw)
    present = ~blank
    if not present.any():
        return _as_text(raw).where(present)
    number = _parse_number(raw.where(present))
    if number[present].notna().all():
        vals = number[present].to_numpy(dtype=float)
        return number.round().astype("Int64") if (np.floor(vals) == vals).all() else number
    flag = _parse_bool(raw.where(present))
    if flag[present].notna().all():
        return flag
    text = _as_text(raw).where(present)
    if text[present].str.match(_ISO_DATE).all():
        when = _parse_timestamp(text)
        if when[present].notna().all():
            return when
    return text.astype("str")


# --- the checks ------------------------------------------------------------------------------
class _Collector:
    """Accumulates problems for one validation run. A problem found again (the next chunk of a
    table) adds to the same report line: counts add up, examples and rows stay the first ones
    in the order of the input."""

    def __init__(self, max_examples: int, file_rows: int) -> None:
        self.max_examples = max_examples
        self.file_rows = max(file_rows, max_examples)
        self.problems: list[Problem] = []
        self._index: dict[tuple[str, str, str, str], Problem] = {}

    def add(self, table: str, column: str, problem: str, action: Action, frame: pd.DataFrame,
            mask: pd.Series | np.ndarray, values: pd.Series | None = None,
            describe: Callable[[np.ndarray], list[str]] | None = None) -> int:
        """Record the rows of `frame` where `mask` holds; examples show `values` at those rows
        (or what `describe(positions)` says about them)."""
        mask = np.asarray(mask, dtype=bool)
        count = int(mask.sum())
        if count == 0:
            return 0
        known = self._index.get((table, column, problem, action))
        room = self.file_rows - (len(known.rows) if known is not None else 0)
        idx = np.flatnonzero(mask)[: max(room, 0)]
        shown: np.ndarray | None
        if describe is not None:
            shown = np.asarray(describe(idx), dtype=object)
        else:
            shown = None if values is None else _as_text(values.iloc[idx]).to_numpy()
        files = frame[FILE_COL].to_numpy()[idx]
        lines = frame[ROW_COL].to_numpy()[idx]
        rows = [
            Example(file=str(files[k]), row=int(lines[k]),
                    value=None if shown is None or pd.isna(shown[k]) else str(shown[k]))
            for k in range(len(idx))
        ]
        self.add_rows(table, column, problem, action, count, rows)
        return count

    def add_rows(self, table: str, column: str, problem: str, action: Action, count: int,
                 rows: list[Example]) -> None:
        """Record `count` rows of a problem, the first of them (in input order) in `rows`."""
        if count == 0:
            return
        key = (table, column, problem, action)
        known = self._index.get(key)
        if known is None:
            rows = rows[: self.file_rows]
            known = self._index[key] = Problem(table, column, problem, action, 0,
                                               rows[: self.max_examples], rows)
            self.problems.append(known)
        else:
            known.rows.extend(rows[: self.file_rows - len(known.rows)])
            known.examples = known.rows[: self.max_examples]
        known.count += count

    def add_whole(self, table: str, column: str, problem: str, action: Action,
                  files: Iterable[str], value: str | None = None) -> None:
        key = (table, column, problem, action)
        if key in self._index:
            return  # a whole-file problem is the same in every chunk
        every = [Example(f, None, value) for f in files]
        self._index[key] = Problem(table, column, problem, action, 1, every[: self.max_examples],
                                   every)
        self.problems.append(self._index[key])


def _with_provenance(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    if FILE_COL not in frame:
        frame[FILE_COL] = table
    if ROW_COL not in frame:
        frame[ROW_COL] = np.arange(1, len(frame) + 1)
    return frame


def _policy_action(policy: Policy) -> Action:
    return {"drop": "dropped", "keep": "kept", "fail": "refused"}[policy]  # type: ignore[return-value]


def _check_columns(spec: Table, raw: pd.DataFrame, typed: pd.DataFrame, now: pd.Timestamp,
                   out: _Collector, files: list[str]) -> None:
    """Per-cell checks: type, emptiness, allowed values, range, future timestamps."""
    name = spec.name
    for col in spec.columns:
        if col.name not in raw:
            if col.required:
                out.add_whole(name, col.name, "missing required column", "refused", files)
                typed[col.name] = _default_column(col, raw.index)
            else:
                typed[col.name] = _default_column(col, raw.index)
            continue
        values, bad = parse_column(raw[col.name], col)
        typed[col.name] = values
        out.add(name, col.name, _TYPE_PROBLEMS.get(col.type, "invalid"), "refused", raw, bad,
                raw[col.name])
        # hand-written: pandera's nullable=False took 0.45 s vs 0.03 s with 1 % of 3.2M rows
        # empty, though 0.007 s vs 0.014 s on the clean world (bench/bench_contract_checks.py).
        if not col.nullable:
            out.add(name, col.name, "empty value", "refused", raw, values.isna() & ~bad)
        # hand-written: pandera's isin took 0.086 s vs 0.008 s with 1 % of 121k rows outside
        # the set, 2.6x the time on the clean world (bench/bench_contract_checks.py).
        if col.allowed is not None:
            present = values.notna()
            text = values.astype("str").str.strip().str.lower()
            allowed = {a.lower() for a in col.allowed}
            outside = present & ~text.isin(allowed)
            out.add(name, col.name, f"not one of {', '.join(col.allowed)}", "refused", raw,
                    outside, raw[col.name])
            typed[col.name] = text.where(present)
        # hand-written: pandera's ge/le took 0.27 s vs 0.023 s with 1 % of 3.2M rows out of
        # range, 2.9x the time on the clean world (bench/bench_contract_checks.py).
        if col.type in ("int", "float"):
            vals = values.astype("float64")
            if col.min is not None:
                out.add(name, col.name, f"below minimum {col.min:g}", "refused", raw,
                        (vals < col.min).fillna(False), raw[col.name])
            if col.max is not None:
                out.add(name, col.name, f"above maximum {col.max:g}", "refused", raw,
                        (vals > col.max).fillna(False), raw[col.name])
        # hand-written: pandera's le(now) took 0.48 s vs 0.013 s with 1 % of 3.2M timestamps
        # ahead, 1.4x the time on the clean world (bench/bench_contract_checks.py).
        if col.type in ("date", "timestamp") and (name, col.name) not in FUTURE_ALLOWED:
            out.add(name, col.name, f"in the future (after {now:%Y-%m-%d %H:%M} UTC)",
                    "refused", raw, (values > now).fillna(False), raw[col.name])
    for col in spec.columns:
        if col.default_from is not None:
            # Absent, or an empty cell: the value of the same row's `default_from` column.
            typed[col.name] = typed[col.name].fillna(typed[col.default_from])


_EMPTY_DTYPES = {"string": "str", "int": "Int64", "float": "float64", "bool": "boolean",
                 "date": "datetime64[us]", "timestamp": "datetime64[us]"}


def _default_column(col: Column, index: pd.Index) -> pd.Series:
    """An optional column absent from the file: its contract default, or empty."""
    dtype = _EMPTY_DTYPES[col.type]
    if col.default is None:
        return pd.Series(None, index=index, dtype=dtype)
    return pd.Series(col.default, index=index, dtype=dtype)


# --- the checks across rows: SQL over the staged tables ---------------------------------------
STAGED = "staged"
"""Schema of the staging database holding the typed rows of each table as they are checked."""
SEQ_COL = "__seq"
"""Arrival order of a row (the order of the input): "first" of repeated keys, example order."""
DROPPED_COL = "__dropped"
_MARKS = {"__unknown": "unknown account_id", "__early": "before signup",
          "__before_sub": "usage before the first subscription"}
"""Per-row marks of the cross-table checks, computed with the row's chunk."""
SHOWN_COL = "__shown"
"""The row's time cell as written, kept only for rows a cross-table check marks."""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _staged(name: str) -> str:
    return f"{STAGED}.{_quote(name)}"


def _arrow_type_sql(con: duckdb.DuckDBPyConnection, arrow: pa.Table) -> dict[str, str]:
    """DuckDB type of each column of `arrow` (all-empty columns: text)."""
    con.register("__probe", arrow.slice(0, 0))
    try:
        described = {r[0]: str(r[1]) for r in
                     con.execute("DESCRIBE SELECT * FROM __probe").fetchall()}
    finally:
        con.unregister("__probe")
    return {c: ("VARCHAR" if t in ("NULL", '"NULL"') else t) for c, t in described.items()}


@dataclass(frozen=True)
class _AccountLookup:
    index: pd.Index
    known: np.ndarray
    signup_day: np.ndarray
    first_start: np.ndarray


class Validation:
    """One validation run over tables that arrive in chunks, in contract order (`TABLES`).

    The per-cell checks run on each chunk as it comes (`add`); its typed rows go to a staging
    table of `stage` (schema `staged`, one table per contract table, with `__file`, `__row`, the
    arrival order `__seq` and a `__dropped` mark), and the checks across rows run there in SQL
    once a table is complete (`end`): repeated keys, then, against accounts, unknown account ids,
    events before the signup, usage before the first subscription and (`finish`) the churn
    flag. A row's cross-table marks are computed with its chunk, against accounts and
    subscriptions that are final by then, and counted over the rows still kept, so counts,
    examples and policies are those of one check over the whole table. `accounts` is checked in
    one piece (its chunks are gathered first): every other table is checked against its ids and
    signups, and a custom attribute takes one type over the whole column.
    """

    def __init__(self, cfg: IngestConfig, now: datetime | None,
                 stage: duckdb.DuckDBPyConnection) -> None:
        self.cfg = cfg
        self.now = _naive_utc(now or datetime.now(UTC))
        self.stage = stage
        stage.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGED}")
        new = lambda: _Collector(cfg.max_examples, cfg.problems_file_rows)  # noqa: E731
        self._cells, self._tables, self._refs = new(), new(), new()
        self._signup_out, self._subscription_out, self._churn = new(), new(), new()
        self.rows_in: dict[str, int] = {}
        self.done: list[str] = []
        self._files: dict[str, list[str]] = {}
        self._keys: dict[str, list[list[str]]] = {}
        self._types: dict[str, dict[str, str]] = {}
        self._accounts: list[pd.DataFrame] = []
        self._known: pd.Index | None = None
        self._signup: pd.Series | None = None
        self._first_start: pd.Series | None = None
        self._lookup_cache: _AccountLookup | None = None
        """Built from `_known`, `_signup` and `_first_start`; reset when they change."""
        self._seq = 0

    # --- feeding ---------------------------------------------------------------------------
    def add(self, name: str, raw: pd.DataFrame) -> None:
        """Check one chunk of table `name` (raw frame: contract columns, `__file`, `__row`)."""
        if name not in self._files:
            if self.done and _order(name) <= _order(self.done[-1]):
                raise ValueError(f"tables must come in contract order: {name} after "
                                 f"{self.done[-1]}")
            self._files[name] = list(raw.attrs.get(SOURCE_FILES_ATTR, [])) or [name]
            self.rows_in[name] = 0
        if name == "accounts":
            self._accounts.append(raw)
        else:
            self._check_chunk(name, raw)

    def end(self, name: str) -> None:
        """Table `name` is complete: run its checks across rows."""
        if name == "accounts":
            chunks, self._accounts = self._accounts or [pd.DataFrame()], []
            raw = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
            raw.attrs = chunks[0].attrs if chunks else {}
            self._check_chunk(name, raw)
        self.done.append(name)
        self._duplicates(name)
        if name == "accounts":
            kept = self._read(name, ["account_id", "created_at"])
            kept = kept.drop_duplicates("account_id")
            self._known = pd.Index(kept["account_id"].dropna().unique())
            self._signup = pd.Series(kept["created_at"].to_numpy(), index=kept["account_id"])
            self._lookup_cache = None
            return
        if self._known is None:
            return
        spec = TABLES_BY_NAME[name]
        self._record_mark(self._refs, name, "account_id", "__unknown",
                          "unknown account_id (not in accounts)", "refused", "account_id")
        if spec.time_column is not None and name not in PAST_CHECK_EXEMPT_TABLES:
            self._record_mark(self._signup_out, name, spec.time_column, "__early",
                              "dated before the account's signup (created_at)",
                              _policy_action(self.cfg.events_before_signup), SHOWN_COL,
                              drop=self.cfg.events_before_signup == "drop")
        if name == "usage_events" and self._first_start is not None:
            policy = self.cfg.usage_before_subscription
            self._record_mark(self._subscription_out, name, "ts", "__before_sub",
                              "usage before the account's first subscription start",
                              _policy_action(policy), SHOWN_COL, drop=policy == "drop")
        if name == "subscriptions":
            first = self.stage.sql(
                f"SELECT account_id, min(start_date) AS first FROM {_staged(name)} "
                f"WHERE NOT {DROPPED_COL} AND account_id IS NOT NULL GROUP BY account_id"
            ).to_arrow_table().to_pandas()
            self._first_start = pd.Series(first["first"].to_numpy(dtype="datetime64[us]"),
                                          index=first["account_id"])
            self._lookup_cache = None

    def finish(self, extra_tables: Iterable[str] = ()) -> ValidationReport:
        """The report of the run (after the churn-flag check, which needs every table)."""
        for name in extra_tables:
            self._tables.add_whole(name, "", "not a contract table", "ignored", [name])
        if "accounts" not in self.done:
            self._tables.add_whole("accounts", "", "missing required table", "refused",
                                   ["accounts"])
        else:
            self._check_churn_flag()
        report = ValidationReport(rows_in=dict(self.rows_in))
        for name in self.done:
            report.rows_out[name] = int(self.stage.execute(
                f"SELECT count(*) FROM {_staged(name)} WHERE NOT {DROPPED_COL}").fetchall()[0][0])
        report.problems = [p for out in (self._cells, self._tables, self._refs,
                                         self._signup_out, self._subscription_out, self._churn)
                           for p in out.problems]
        return report

    def columns(self, name: str) -> list[str]:
        """The staged columns of `name` that are table columns (contract, then attributes)."""
        return [c for c in self._types[name] if not c.startswith("__")]

    def column_types(self, name: str) -> dict[str, str]:
        return {c: self._types[name][c] for c in self.columns(name)}

    def kept(self, name: str) -> str:
        """SQL source of the rows of `name` to load (in the staging database)."""
        return f"(SELECT * FROM {_staged(name)} WHERE NOT {DROPPED_COL})"

    def frame(self, name: str) -> pd.DataFrame:
        """The kept rows of `name` as a typed frame, in input order."""
        return self._read(name, self.columns(name)).reset_index(drop=True)

    # --- one chunk -------------------------------------------------------------------------
    def _check_chunk(self, name: str, raw: pd.DataFrame) -> None:
        spec = TABLES_BY_NAME[name]
        raw = _with_provenance(name, raw)
        self.rows_in[name] += len(raw)
        typed = pd.DataFrame(index=raw.index)
        _check_columns(spec, raw, typed, self.now, self._cells, self._files[name])
        if spec.extra_columns_allowed:
            for extra in _extra_columns(spec, raw):
                typed[extra] = infer_attribute(raw[extra])
        user_key = [c for c in raw.columns if c.startswith(KEY_PREFIX)]
        self._keys[name] = ([list(spec.key)] if spec.key else []) + \
            ([user_key] if user_key else [])
        for col in user_key:
            typed[col] = raw[col]
        if self._known is not None and spec.references_accounts:
            self._mark_chunk(spec, raw, typed)
        typed[FILE_COL] = raw[FILE_COL].astype(str) if not isinstance(
            raw[FILE_COL].dtype, pd.CategoricalDtype) else raw[FILE_COL]
        typed[ROW_COL] = raw[ROW_COL].to_numpy(dtype=np.int64)
        typed[SEQ_COL] = np.arange(self._seq, self._seq + len(raw), dtype=np.int64)
        self._seq += len(raw)
        self._stage(name, spec, typed)

    def _mark_chunk(self, spec: Table, raw: pd.DataFrame, typed: pd.DataFrame) -> None:
        """The cross-table marks of a chunk (counted in `end`, over the rows still kept)."""
        assert self._known is not None and self._signup is not None
        ids = typed["account_id"]
        # One hash look-up of the chunk's ids serves every mark (a map per mark hashed the
        # same strings again: the marks were a fifth of a big usage file's ingest).
        lookup = self._lookup()
        pos = lookup.index.get_indexer(ids)
        hit = pos >= 0
        at = np.where(hit, pos, 0)
        typed["__unknown"] = ids.notna().to_numpy(dtype=bool) & ~(hit & lookup.known[at])
        shown = np.zeros(len(typed), dtype=bool)
        time_col = spec.time_column
        if time_col is not None and spec.name not in PAST_CHECK_EXEMPT_TABLES:
            # By calendar day: a date-only event on the signup day is not before the signup.
            created = np.where(hit, lookup.signup_day[at], np.datetime64("NaT", "us"))
            early = typed[time_col].to_numpy(dtype="datetime64[us]") < created
            typed["__early"] = early
            shown |= early
        if spec.name == "usage_events" and self._first_start is not None:
            first = np.where(hit, lookup.first_start[at], np.datetime64("NaT", "us"))
            before = typed["ts"].to_numpy(dtype="datetime64[us]") < first
            typed["__before_sub"] = before
            shown |= before
        if shown.any() and time_col in raw:
            typed[SHOWN_COL] = _as_text(raw[time_col]).where(shown)

    def _lookup(self) -> _AccountLookup:
        """Per account id: known to accounts, its signup day, its first subscription start
        (NaT where none), built once per state of the accounts and subscriptions."""
        if self._lookup_cache is not None:
            return self._lookup_cache
        assert self._known is not None and self._signup is not None
        signup = self._signup[self._signup.index.notna()]
        first = self._first_start if self._first_start is not None else \
            pd.Series([], dtype="datetime64[us]")
        first = first[first.index.notna()]
        index = pd.Index(self._known).append(pd.Index(signup.index)).append(
            pd.Index(first.index)).unique()
        day = signup.astype("datetime64[us]").dt.normalize()
        lookup = _AccountLookup(
            index, index.isin(self._known),
            day.reindex(index).to_numpy(dtype="datetime64[us]"),
            first.astype("datetime64[us]").reindex(index).to_numpy(dtype="datetime64[us]"))
        self._lookup_cache = lookup
        return lookup

    def _stage(self, name: str, spec: Table, typed: pd.DataFrame) -> None:
        arrow = pa.Table.from_pandas(typed, preserve_index=False)
        if name not in self._types:
            found = _arrow_type_sql(self.stage, arrow)
            types = {c.name: DUCKDB_TYPES[c.type] for c in spec.columns}
            types |= {c: found[c] for c in typed.columns
                      if c not in types and not c.startswith("__")}
            types |= {c: found[c] for c in typed.columns if c.startswith(KEY_PREFIX)}
            types |= {FILE_COL: "VARCHAR", ROW_COL: "BIGINT", SEQ_COL: "BIGINT"}
            self._types[name] = types
            defs = [f"{_quote(c)} {t}" for c, t in types.items()]
            defs += [f"{m} BOOLEAN DEFAULT false" for m in _MARKS]
            defs += [f"{SHOWN_COL} VARCHAR", f"{DROPPED_COL} BOOLEAN DEFAULT false"]
            self.stage.execute(f"CREATE OR REPLACE TABLE {_staged(name)} ({', '.join(defs)})")
        types = self._types[name]
        cols = [c for c in typed.columns if c in types or c in _MARKS or c == SHOWN_COL]
        casts = [f"CAST({_quote(c)} AS {types.get(c, 'BOOLEAN' if c in _MARKS else 'VARCHAR')})"
                 for c in cols]
        self.stage.register("__chunk", arrow)
        try:
            self.stage.execute(f"INSERT INTO {_staged(name)} ({', '.join(map(_quote, cols))}) "
                               f"SELECT {', '.join(casts)} FROM __chunk")
        finally:
            self.stage.unregister("__chunk")

    # --- across rows -----------------------------------------------------------------------
    def _read(self, name: str, columns: list[str], where: str = "") -> pd.DataFrame:
        cols = ", ".join(_quote(c) for c in columns)
        arrow = self.stage.sql(
            f"SELECT {cols} FROM {_staged(name)} WHERE NOT {DROPPED_COL} {where} "
            f"ORDER BY {SEQ_COL}").to_arrow_table()
        return arrow.to_pandas(types_mapper=_nullable_dtype, date_as_object=False)

    def _duplicates(self, name: str) -> None:
        """Repeated keys: every row after the first of its key (in input order)."""
        policy = self.cfg.duplicates
        if name == "accounts" and policy == "keep":
            # One row per account is what `accounts` means: a repeated id is dropped regardless.
            policy = "drop"
        table = _staged(name)
        for key in self._keys.get(name, []):
            if not all(k in self._types[name] for k in key):
                continue
            cols = ", ".join(_quote(k) for k in key)
            (count,) = self.stage.execute(
                f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} "
                f"GROUP BY {cols} HAVING count(*) > 1)").fetchall()[0]
            if not count:
                continue
            repeated = (f"SELECT {SEQ_COL}, {FILE_COL}, {ROW_COL}, {cols}, "
                        f"first_value({ROW_COL}) OVER w AS __first FROM {table} "
                        f"WINDOW w AS (PARTITION BY {cols} ORDER BY {SEQ_COL}) "
                        f"QUALIFY row_number() OVER w > 1")
            shown = self.stage.sql(
                f"SELECT * FROM ({repeated}) ORDER BY {SEQ_COL} LIMIT ?",
                params=[self._cells.file_rows]).to_arrow_table().to_pandas(
                    types_mapper=_nullable_dtype, date_as_object=False)
            texts = [_as_text(shown[k]).astype(str).to_numpy() for k in key]
            rows = [Example(str(f), int(r), " | ".join(str(t[i]) for t in texts)
                            + f" (first on row {int(first)})")
                    for i, (f, r, first) in enumerate(zip(
                        shown[FILE_COL], shown[ROW_COL], shown["__first"], strict=True))]
            label = ", ".join(k.removeprefix(KEY_PREFIX) for k in key)
            # hand-written rather than pandera's unique: pandera leaves repeated empty keys out
            # (bench/bench_contract_checks.py); here NULL keys group together, as they repeat.
            self._cells.add_rows(name, label, "duplicate key", _policy_action(policy),
                                 int(count), rows)
            if policy == "drop":
                self.stage.execute(
                    f"UPDATE {table} SET {DROPPED_COL} = true FROM ({repeated}) AS d "
                    f"WHERE {table}.{SEQ_COL} = d.{SEQ_COL}")

    def _record_mark(self, out: _Collector, name: str, column: str, mark: str, problem: str,
                     action: Action, shown: str, *, drop: bool = False) -> None:
        table = _staged(name)
        where = f"{mark} AND NOT {DROPPED_COL}"
        (count,) = self.stage.execute(f"SELECT count(*) FROM {table} WHERE {where}"
                                      ).fetchall()[0]
        if not count:
            return
        found = self.stage.execute(
            f"SELECT {FILE_COL}, {ROW_COL}, {_quote(shown)} FROM {table} WHERE {where} "
            f"ORDER BY {SEQ_COL} LIMIT ?", [out.file_rows]).fetchall()
        out.add_rows(name, column, problem, action, int(count),
                     [Example(str(f), int(r), None if v is None else str(v))
                      for f, r, v in found])
        if drop:
            self.stage.execute(f"UPDATE {table} SET {DROPPED_COL} = true WHERE {where}")

    def _check_churn_flag(self) -> None:
        column = self.cfg.churn_flag_column
        if not column or column not in self._types.get("accounts", {}) \
                or "churn_events" not in self.done:
            return
        accounts = self._read("accounts", ["account_id", column, FILE_COL, ROW_COL, SEQ_COL])
        flag = _parse_bool(accounts[column])
        if flag.isna().all() and accounts[column].notna().any():
            log.warning("accounts.%s is not a yes/no column: churn flag check skipped", column)
            return
        churned = self._read("churn_events", ["account_id"])["account_id"]
        disagree = (flag.notna() & (flag.fillna(False).astype(bool)
                                    != accounts["account_id"].isin(churned))).astype(bool)
        action: Action = {"drop": "blanked", "keep": "kept", "fail": "refused"}[
            self.cfg.churn_flag_mismatch]  # type: ignore[assignment]
        self._churn.add("accounts", column, "churn flag disagrees with churn_events", action,
                        accounts, disagree, accounts[column])
        if self.cfg.churn_flag_mismatch == "drop" and disagree.any():
            blank = pa.table({SEQ_COL: accounts.loc[disagree, SEQ_COL].to_numpy(np.int64)})
            self.stage.register("__blank", blank)
            try:
                self.stage.execute(f"UPDATE {_staged('accounts')} SET {_quote(column)} = NULL "
                                   f"WHERE {SEQ_COL} IN (SELECT {SEQ_COL} FROM __blank)")
            finally:
                self.stage.unregister("__blank")


def _order(name: str) -> int:
    return [t.name for t in TABLES].index(name)


def _nullable_dtype(kind: pa.DataType) -> object:
    """Integers and booleans with gaps stay integers and booleans (not floats and objects)."""
    if pa.types.is_integer(kind):
        return pd.Int64Dtype()
    if pa.types.is_boolean(kind):
        return pd.BooleanDtype()
    return None


def validate_tables(frames: dict[str, pd.DataFrame], cfg: IngestConfig,
                    now: datetime | None = None,
                    progress: Callable[[str], None] | None = None) -> ValidationResult:
    """Check every table against the contract and apply the ingest policies.

    `frames` maps contract table names to raw frames (see the module docstring). Returns the
    typed frames (rows removed by a `drop` policy are gone) and the report; when the report is
    fatal the frames must not be loaded. The checks across rows run in a throwaway in-memory
    DuckDB, as ingestion runs them over its staging database.
    """
    stage = duckdb.connect()
    try:
        run = Validation(cfg, now, stage)
        for spec in TABLES:
            if spec.name in frames:
                run.add(spec.name, frames[spec.name])
                run.end(spec.name)
                if progress is not None:
                    progress(spec.name)
        report = run.finish(n for n in frames if n not in TABLES_BY_NAME)
        tables = {name: run.frame(name) for name in run.done}
    finally:
        stage.close()
    return ValidationResult(tables, report)


def _naive_utc(value: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _extra_columns(spec: Table, raw: pd.DataFrame) -> list[str]:
    return [c for c in raw.columns
            if c not in spec.column_names and not c.startswith("__")]
