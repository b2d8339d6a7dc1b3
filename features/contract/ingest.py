"""Ingestion: a folder of input files, validated, loaded into the DuckDB warehouse in one go.

`ingest_folder` reads the folder (one `<table>.csv|parquet` per contract table, or a customer export
through a mapping, see `features.contract.mapping`), validates every table against the contract
(`features.contract.validate`) and, only if nothing fatal was found, replaces the warehouse's
contract tables with the folder's snapshot in ONE transaction: tables absent from the folder are
dropped (not connected) and a row is appended to `ingest_log`. A refusal or a crash leaves the
warehouse exactly as it was (a warehouse file created by a failed first load is removed). Every
report, refused or not, also goes to the problems file beside the warehouse
(`features.contract.problems_file`; removed when there are no problems), so the problems can be read
in full after the fact.

It owns the orchestration and the warehouse writes; it never prints (the CLI renders the report)
and never decides what a valid value is.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from features.contract.mapping import (
    Mapping,
    identity_mapping,
    load_mapping,
    quote,
    stream_table,
)
from features.contract.problems_file import write_problems
from features.contract.settings import IngestConfig
from features.contract.sources import (
    SourceError,
    SourceInfo,
    file_format,
    register_source,
    relative,
)
from features.contract.tables import TABLES, TABLES_BY_NAME, Table
from features.contract.validate import Example, Problem, Validation

log = logging.getLogger(__name__)

LOG_TABLE = "ingest_log"
FOLDER = "(folder)"
"""Table label of problems about the folder itself (unknown or ambiguous files)."""

Progress = Callable[[str, str], None]
"""progress(table, step) with step one of "read", "checked", "loaded"."""
STEPS = ("read", "checked", "loaded")


@dataclass
class TableSummary:
    files: tuple[str, ...]
    rows_read: int
    rows_loaded: int


@dataclass
class IngestReport:
    data_dir: Path
    warehouse: Path
    mapping: str | None
    started_at: datetime
    tables: dict[str, TableSummary] = field(default_factory=dict)
    not_connected: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    loaded: bool = False
    seconds: float = 0.0
    problems_file: Path | None = None
    """Every problem of this ingest, one line per example; None when there were none."""

    @property
    def refused(self) -> bool:
        return any(p.fatal for p in self.problems)

    def problem_counts(self) -> dict[str, int]:
        """`table.column: problem (action)` -> rows affected."""
        return {f"{p.table}{'.' + p.column if p.column else ''}: {p.problem} ({p.action})":
                p.count for p in self.problems}

    def row_counts(self) -> dict[str, int]:
        return {name: t.rows_loaded for name, t in self.tables.items()}

    def summary(self, limit: int = 20) -> str:
        """Plain-text account of the problems, fatal ones first."""
        ordered = sorted(self.problems, key=lambda p: not p.fatal)
        lines = [p.describe() for p in ordered[:limit]]
        if len(ordered) > limit:
            lines.append(f"... and {len(ordered) - limit} more problems")
        return "\n".join(lines)


class IngestRefused(ValueError):
    """Fatal problems in the input: nothing was written. `report` says what and where."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        fatal = [p for p in report.problems if p.fatal]
        super().__init__(f"ingest of {report.data_dir} refused: {len(fatal)} fatal problem(s)\n"
                         + report.summary())


# --- reading -----------------------------------------------------------------------------------
def discover_folder(data_dir: Path, max_examples: int = 5
                    ) -> tuple[dict[str, list[Path]], list[Problem]]:
    """Contract files of a folder, and problems about the rest (unknown or ambiguous files)."""
    found: dict[str, list[Path]] = {}
    unknown: list[str] = []
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith("."):
            continue
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        if path.is_file() and file_format(path) and stem.lower() in TABLES_BY_NAME:
            found.setdefault(stem.lower(), []).append(path)
        else:
            unknown.append(path.name + ("/" if path.is_dir() else ""))
    problems = [_folder_problem("not a contract table file: ignored", "ignored", unknown,
                                max_examples)] if unknown else []
    for name, paths in list(found.items()):
        if len(paths) > 1:
            problems.append(Problem(name, "", "several files for one table: keep one",
                                    "refused", len(paths),
                                    [Example(p.name, None, None) for p in paths]))
            del found[name]
    return found, problems


def _folder_problem(problem: str, action: str, files: list[str], max_examples: int) -> Problem:
    return Problem(FOLDER, "", problem, action, len(files),  # type: ignore[arg-type]
                   [Example(f, None, None) for f in files[:max_examples]])


def _resolve_sources(mapping: Mapping, data_dir: Path) -> tuple[dict[str, list[Path]],
                                                               list[Problem]]:
    files: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for name, spec in mapping.sources.items():
        # Relative to the data folder, or absolute; a file may live outside the folder.
        pattern = str(data_dir / Path(spec.file).expanduser())
        matches = sorted(p for p in map(Path, glob.glob(pattern)) if p.is_file())
        if not matches:
            problems.append(Problem(name, "", f"no file matches {spec.file!r}", "refused", 1,
                                    [Example(spec.file, None, None)]))
        files[name] = matches
    return files, problems


def _unused_files(data_dir: Path, used: set[Path], max_examples: int) -> list[Problem]:
    unused = [p.name for p in sorted(data_dir.iterdir())
              if not p.name.startswith(".") and p.is_file() and p.resolve() not in used]
    return [_folder_problem("not used by the mapping: ignored", "ignored", unused,
                            max_examples)] if unused else []


def read_folder(con: duckdb.DuckDBPyConnection, data_dir: Path, cfg: IngestConfig,
                mapping: Mapping | None) -> tuple[Mapping, dict[str, SourceInfo], list[Problem]]:
    """Register every source file as a view on `con`; return the mapping to apply."""
    problems: list[Problem] = []
    infos: dict[str, SourceInfo] = {}
    if mapping is None:
        files, problems = discover_folder(data_dir, cfg.max_examples)
        for name, paths in files.items():
            try:
                infos[name] = register_source(con, name, paths, data_dir, all_varchar=True)
            except SourceError as exc:
                problems.append(Problem(name, "", str(exc), "refused", 1,
                                        [Example(relative(paths[0], data_dir), None, None)]))
        mapping, ignored = identity_mapping(
            {n: files[n] for n in infos}, {n: i.columns for n, i in infos.items()})
        for name, cols in ignored.items():
            problems.append(Problem(name, ", ".join(cols), "column not in the contract: ignored",
                                    "ignored", len(cols),
                                    [Example(f, None, None) for f in infos[name].files]))
        return mapping, infos, problems
    files, problems = _resolve_sources(mapping, data_dir)
    for name, spec in mapping.sources.items():
        if not files[name]:
            continue
        try:
            infos[name] = register_source(con, name, files[name], data_dir,
                                          all_varchar=spec.all_text, types=spec.types,
                                          delimiter=spec.delimiter)
        except SourceError as exc:
            problems.append(Problem(name, "", str(exc), "refused", 1,
                                    [Example(f, None, None) for f in
                                     (relative(p, data_dir) for p in files[name])]))
    used = {p.resolve() for paths in files.values() for p in paths}
    problems += _unused_files(data_dir, used, cfg.max_examples)
    return mapping, infos, problems


def _quiet(con: duckdb.DuckDBPyConnection) -> None:
    """No DuckDB progress bar: it writes to stdout even when that is a log file or `--json`
    output, and the command line shows its own progress."""
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter DuckDB refuses the setting (and draws no text bar there)


# --- staging -----------------------------------------------------------------------------------
class WarehouseWriteError(RuntimeError):
    """The warehouse (or the staging space beside it) could not be written: read-only, disk
    full. One line naming the warehouse and what happened; the previous warehouse is intact."""

    def __init__(self, warehouse_path: Path, what: str, *, committed: bool = False) -> None:
        self.warehouse = warehouse_path
        self.committed = committed
        what = " ".join(what.split())
        outcome = ("the new tables are committed in its write-ahead log "
                   f"({warehouse_path}.wal) and apply when it is next opened" if committed
                   else "the previous warehouse is unchanged")
        super().__init__(f"cannot write the warehouse {warehouse_path}: {what}; {outcome}")


def _io_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_writable(warehouse_path: Path) -> None:
    """Refuse at once, before reading any input, a warehouse that cannot be written."""
    if warehouse_path.exists() and not os.access(warehouse_path, os.W_OK):
        raise WarehouseWriteError(warehouse_path, "the file is read-only")


def _open_staging(warehouse_path: Path, cfg: IngestConfig
                  ) -> tuple[Path, duckdb.DuckDBPyConnection]:
    """A private DuckDB database for the checked rows, spilling to a folder beside the warehouse
    (same disk as the tables they become; removed after the ingest). In memory rather than a
    file: appending chunks to an in-memory table is several times faster, and DuckDB keeps at
    most `ingest.memory_limit` of it in memory, writing the rest to the folder."""
    try:
        warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{warehouse_path.name}.ingest-",
                                       dir=warehouse_path.parent))
    except OSError as exc:
        raise WarehouseWriteError(warehouse_path, f"cannot create the staging folder beside "
                                  f"it: {_io_reason(exc)}") from None
    try:
        con = duckdb.connect(":memory:", config={
            "memory_limit": cfg.memory_limit, "temp_directory": str(folder / "spill"),
            "preserve_insertion_order": True})
    except duckdb.Error as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise WarehouseWriteError(warehouse_path, _io_reason(exc)) from None
    return folder, con


# --- loading -----------------------------------------------------------------------------------
WAREHOUSE_ALIAS = "warehouse"
"""Name under which the warehouse is attached to the staging database while it is written."""


def _write_table(con: duckdb.DuckDBPyConnection, spec: Table, staged: StagedTable) -> None:
    """Create one contract table in the attached warehouse with contract types and fill it from
    the checked rows of the staging database."""
    defs, selects = [], []
    for name, ctype in staged.types.items():
        col = spec.column(name) if name in spec.column_names else None
        defs.append(f"{quote(name)} {ctype}" + ("" if col is None or col.nullable
                                                 else " NOT NULL"))
        selects.append(f"CAST({quote(name)} AS {ctype})")
    target = f"{WAREHOUSE_ALIAS}.{quote(spec.name)}"
    con.execute(f"CREATE TABLE {target} ({', '.join(defs)})")
    # Stored in (account_id, time) order: each row group then holds few accounts, so DuckDB's
    # zone maps skip nearly all of a table when the online path reads one account.
    order = ", ".join(quote(c) for c in ("account_id", spec.time_column) if c)
    con.execute(f"INSERT INTO {target} SELECT {', '.join(selects)} FROM {staged.source} "
                f"ORDER BY {order}")


@dataclass(frozen=True)
class StagedTable:
    source: str
    """SQL source of the rows to load, in the staging database."""
    types: dict[str, str]
    """Table column -> warehouse type (contract columns, then custom attributes)."""


def _append_log(con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    log_table = f"{WAREHOUSE_ALIAS}.{LOG_TABLE}"
    con.execute(f"""CREATE TABLE IF NOT EXISTS {log_table} (
        ingested_at TIMESTAMP, folder VARCHAR, mapping VARCHAR, row_counts VARCHAR,
        problem_counts VARCHAR, not_connected VARCHAR)""")
    con.execute(
        f"INSERT INTO {log_table} VALUES (?, ?, ?, ?, ?, ?)",
        [report.started_at.replace(tzinfo=None), str(report.data_dir.resolve()), report.mapping,
         json.dumps(report.row_counts()), json.dumps(report.problem_counts()),
         json.dumps(report.not_connected)],
    )


def load_tables(warehouse_path: Path, con: duckdb.DuckDBPyConnection,
                tables: dict[str, StagedTable], report: IngestReport,
                progress: Progress | None = None) -> None:
    """Replace every contract table with the staged `tables` (absent ones dropped) in one
    transaction of the warehouse, attached to the staging connection `con`. A failure leaves
    the warehouse as it was (a warehouse created by a failed first load is removed); an I/O
    failure (read-only, disk full) is a WarehouseWriteError."""
    existed = warehouse_path.exists()
    attached = committed = False
    try:
        con.execute(f"ATTACH ? AS {WAREHOUSE_ALIAS}", [str(warehouse_path)])
        attached = True
        con.execute("BEGIN TRANSACTION")
        try:
            for spec in TABLES:
                con.execute(f"DROP TABLE IF EXISTS {WAREHOUSE_ALIAS}.{quote(spec.name)}")
                if spec.name in tables:
                    _write_table(con, spec, tables[spec.name])
                    if progress is not None:
                        progress(spec.name, "loaded")
            _append_log(con, report)
            try:
                con.execute("COMMIT")
            except duckdb.Error as exc:
                # A commit fails on writing its log (disk full): DuckDB has rolled it back.
                raise WarehouseWriteError(warehouse_path, _io_reason(exc)) from exc
            committed = True
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        con.execute(f"DETACH {WAREHOUSE_ALIAS}")
        attached = False
    except BaseException as exc:
        if attached:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DETACH {WAREHOUSE_ALIAS}")
        if not existed and not committed:
            # A failed first load must not leave an empty warehouse behind.
            for leftover in (warehouse_path, Path(f"{warehouse_path}.wal")):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, duckdb.IOException | OSError):
            # After the commit only the checkpoint failed (DETACH writes the log into the
            # file): the load stands, in the log.
            raise WarehouseWriteError(warehouse_path, _io_reason(exc),
                                      committed=committed) from exc
        raise


# --- the whole thing ---------------------------------------------------------------------------
def ingest_folder(data_dir: Path | str, warehouse_path: Path | str, cfg: IngestConfig,
                  mapping: Path | str | Mapping | None = None, now: datetime | None = None,
                  progress: Progress | None = None) -> IngestReport:
    """Validate the folder and load it into the warehouse; raise IngestRefused on fatal problems.

    `mapping` is a mapping YAML (path, or the name of a packaged one such as "ravenstack"), an
    already parsed Mapping, or None for a folder of contract files. `now` bounds timestamps
    (nothing may be dated after it); default: the current UTC time. Tables are read, checked
    and staged `ingest.chunk_rows` rows at a time, so memory stays bounded whatever the size of
    the input; a warehouse that cannot be written raises WarehouseWriteError.
    """
    clock = time.perf_counter()
    data_dir, warehouse_path = Path(data_dir), Path(warehouse_path)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping_name: str | None = str(mapping)
        mapping = load_mapping(mapping)
    else:
        mapping_name = None if mapping is None else "(in-memory mapping)"
    report = IngestReport(data_dir=data_dir, warehouse=warehouse_path, mapping=mapping_name,
                          started_at=datetime.now(UTC))
    tick = progress or (lambda table, step: None)
    _check_writable(warehouse_path)

    folder, con = _open_staging(warehouse_path, cfg)
    try:
        try:
            _stage_and_load(con, data_dir, warehouse_path, cfg, mapping, now, report, tick)
        except duckdb.IOException as exc:
            raise WarehouseWriteError(warehouse_path, _io_reason(exc)) from exc
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)
    report.loaded = True
    report.seconds = time.perf_counter() - clock
    log.info("ingested %s into %s in %.1fs: %s; not connected: %s", data_dir, warehouse_path,
             report.seconds, report.row_counts(), ", ".join(report.not_connected) or "none")
    return report


def _stage_and_load(con: duckdb.DuckDBPyConnection, data_dir: Path, warehouse_path: Path,
                    cfg: IngestConfig, mapping: Mapping | None, now: datetime | None,
                    report: IngestReport, tick: Progress) -> None:
    clock = time.perf_counter()
    _quiet(con)
    resolved, infos, problems = read_folder(con, data_dir, cfg, mapping)
    report.problems += problems
    if report.refused:
        report.problems_file = write_problems(warehouse_path, report.problems)
        raise IngestRefused(report)
    # The mapping query streams on `con`; checked chunks are written through a second
    # connection to the same database (one DuckDB, one memory limit).
    stage = con.cursor()
    _quiet(stage)
    run = Validation(cfg, now, stage)
    for spec in TABLES:
        if spec.name not in resolved.tables:
            continue
        # accounts in one piece: the validation holds it whole anyway (see Validation).
        rows = cfg.chunk_rows if spec.name != "accounts" else 1 << 62
        for chunk in stream_table(con, spec.name, resolved.tables[spec.name], infos, rows):
            run.add(spec.name, chunk)
            del chunk
        tick(spec.name, "read")
        run.end(spec.name)
        tick(spec.name, "checked")
    result = run.finish()
    report.problems += result.problems
    report.not_connected = [t.name for t in TABLES if t.name not in run.done]
    for name in run.done:
        tm = resolved.tables[name]
        files = infos[tm.source].files if tm.source in infos else ()
        report.tables[name] = TableSummary(files, result.rows_in[name], result.rows_out[name])
    # Before the load: should the load crash, the file still describes this folder.
    report.problems_file = write_problems(warehouse_path, report.problems)
    if report.refused:
        report.seconds = time.perf_counter() - clock
        raise IngestRefused(report)
    staged = {name: StagedTable(run.kept(name), run.column_types(name)) for name in run.done}
    stage.close()
    load_tables(warehouse_path, con, staged, report, tick)
