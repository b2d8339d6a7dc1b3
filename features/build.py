"""The one feature function: `build_features(con, entities, cfg)` for training, batch and online.

This module owns running the definitions of `features/definitions.py` against the warehouse for
an entity frame (`account_id`, `as_of`): validating the entities, executing one Ibis expression
per connected source table (each restricted to the entity accounts and time range before
anything else), and assembling the frame in the registry's order with the registry's dtypes.
Many entities run in DuckDB, each source's statement compiled once per warehouse schema with the
entities' time range as parameters (`features/duckdb_sql.py`). Few (the online path) have their
rows fetched from DuckDB and all the expressions run side by side on SQLite, compiled once per
warehouse schema (`features/sqlite_engine.py`): the same definitions on another engine,
because DuckDB 2.0's fixed cost per statement is most of a one-account build. A long-lived
reader of a read-only warehouse (the service) holds the rows in memory by account instead of
fetching them (`warm_online`, `features/account_rows.py`). On both paths usage's days-since
fallback (rows before its lookback) runs only for the entities left without an activity date.
It defines no feature itself (definitions.py does) and never writes to the warehouse.

Missing semantics are documented in `features/definitions.py`; the one rule that lives here: a
source table that is not connected gives NaN for all its features.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from ibis.backends.sql.datatypes import DuckDBType

from features import definitions as d
from features import duckdb_sql, sqlite_engine
from features.account_rows import AccountRows
from features.contract.tables import TABLES
from features.contract.tables import table as contract_table
from features.contract.warehouse import catalog_read, connected_tables, is_read_only, remembered
from features.event_types import EventType, event_types
from features.registry import ENTITY_COLUMNS, FEATURES, datetimes, event_type_features
from features.settings import FeatureConfig

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


class EntityError(ValueError):
    """The entity frame is not usable: names the row and column."""


def validate_entities(entities: pd.DataFrame) -> pd.DataFrame:
    """`account_id` as str and `as_of` as datetime64[us] midnights, or a clear error."""
    missing = [c for c in ENTITY_COLUMNS if c not in entities.columns]
    if missing:
        raise EntityError(f"entities: missing column(s) {', '.join(missing)}")
    ids = entities["account_id"]
    bad = ids.isna().to_numpy()
    if bad.any():
        raise EntityError(f"entities row {int(np.argmax(bad)) + 1}, column account_id: empty")
    try:
        as_of = datetimes(entities["as_of"])
    except (ValueError, TypeError) as exc:
        raise EntityError(f"entities column as_of: not a date ({exc})") from None
    if getattr(as_of.dt, "tz", None) is not None:
        as_of = as_of.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = as_of.isna().to_numpy()
    if bad.any():
        raise EntityError(f"entities row {int(np.argmax(bad)) + 1}, column as_of: empty")
    values = as_of.to_numpy()
    bad = values != values.astype("datetime64[D]")
    if bad.any():
        row = int(np.argmax(bad))
        raise EntityError(
            f"entities row {row + 1}, column as_of: {as_of.iloc[row]} is not a date at midnight "
            "(features are as of the start of a day)"
        )
    return pd.DataFrame(
        {
            "account_id": ids.astype(str).to_numpy(),
            "as_of": values.astype("datetime64[us]"),
        }
    )


def build_features(
    con: duckdb.DuckDBPyConnection,
    entities: pd.DataFrame,
    cfg: FeatureConfig,
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Point-in-time features for each entity row, in the same order.

    Columns: `account_id`, `as_of`, every feature of the registry in order, then the
    `event_<slug>_*` features of each event type (`features.event_types`: the warehouse's most
    frequent, or `cfg.event_types`), then `attr_<col>` for each extra column of `accounts`
    (`attr_days_since_<col>` for a date). Numeric features are float64 (NaN = missing),
    categorical ones pandas `category`. Duplicate entity rows are computed once.

    Up to `cfg.online_max_entities` distinct entity rows (the online path), the entities' rows
    run through SQL compiled for SQLite once per warehouse schema, so a call costs neither
    Ibis's compilation nor DuckDB's per-statement planning; larger frames run in DuckDB,
    compiled once per warehouse schema with the entities' time range as statement parameters,
    so the engine skips rows outside every window. Both run the same definitions and give the
    same values (tested).
    """
    report = progress or (lambda _step, _done: None)
    ents = validate_entities(entities)
    distinct = ents if len(ents) == 1 else ents.drop_duplicates(ignore_index=True)
    keys = pd.DataFrame({d.ENTITY_KEY: np.arange(len(distinct), dtype="int64"),
                         "account_id": distinct["account_id"].to_numpy(),
                         "as_of": distinct["as_of"].to_numpy()})
    runner: _Runner
    if hasattr(con, "feature_runner"):
        # A source on another engine (features/spark_engine.py) brings its own runner.
        runner = con.feature_runner(cfg)
    elif 0 < len(keys) <= cfg.online_max_entities:
        runner = _Online(con, cfg)
    else:
        runner = _Batch(con, cfg)
    try:
        # On the runner's own cursor: concurrent calls on one connection never share one.
        connected = runner.connected()
        if "accounts" not in connected:
            raise ValueError(
                "the warehouse has no accounts table: run `healthscore ingest` first")
        # Per warehouse, not per call: read once per connection of a read-only warehouse.
        types = event_types(con, cfg) if "usage_events" in connected else ()
        runner.types = types
        steps = _steps(connected, cfg.attribute_prefix, types)
        # The profile (with `_known`) comes first; usage's days_since_last_activity still
        # needs its fallback on the rows before the lookback, for the entities left without.
        parts = runner.frames(steps, keys, report)
        _check_known(parts[0], keys, ents)
        if not runner.fallback_included:
            parts = [_fill_old_activity(runner, p, keys) if "days_since_last_activity" in p
                     else p for p in parts]
    finally:
        runner.close()
    for spec in d.SOURCES:
        if spec.table not in connected:
            log.info("%s is not connected: its features are missing", spec.table)
    report("assemble", len(steps) / (len(steps) + 1))
    # The caller's own as_of values (and resolution) go back out, so frames join on them.
    as_of = datetimes(entities["as_of"]).reset_index(drop=True)
    if getattr(as_of.dt, "tz", None) is not None:
        as_of = as_of.dt.tz_convert("UTC").dt.tz_localize(None)
    out = _assemble(ents, keys, parts, cfg, as_of, types)
    report("done", 1.0)
    return out


# --- what to run --------------------------------------------------------------------------------
Source = Callable[..., ir.Table]
"""`source(name, older=False)`: the contract table `name` restricted to what the entities can
see; `older=True` for the rows before the usage lookback (days_since fallback)."""
Build = Callable[[ir.Table, Source], ir.Table]
FALLBACK = "usage_events:older"


def _steps(connected: frozenset[str], prefix: str, types: tuple[EventType, ...] = ()
           ) -> list[tuple[str, Build]]:
    """One expression builder per connected source table, profile first."""

    def profile(ent: ir.Table, src: Source) -> ir.Table:
        return d.profile_features(ent, src("accounts"), prefix)

    def usage(ent: ir.Table, src: Source) -> ir.Table:
        subs = src("subscriptions") if "subscriptions" in connected else None
        seats = d.contracted_seats(ent, src("accounts"), subs)
        return d.usage_features(ent, src("usage_events"), seats, types)

    def other(spec: d.SourceDefinition) -> Build:
        return lambda ent, src: spec.build(ent, src(spec.table))

    steps: list[tuple[str, Build]] = [("accounts", profile)]
    for spec in d.SOURCES:
        if spec.table in connected:
            steps.append((spec.table, usage if spec.table == "usage_events" else other(spec)))
    return steps


def _older_usage(ent: ir.Table, src: Source) -> ir.Table:
    return d.usage_last_activity(ent, src("usage_events", older=True))


# --- how to run it ------------------------------------------------------------------------------
Part = dict[str, np.ndarray]
"""One step's result as columns, one row per entity in key order (`_eid` ascending): reading
values from arrays, not a DataFrame's columns, keeps a one-row build cheap (pandas creates a
Series per column read)."""


def _part(frame: pd.DataFrame) -> Part:
    """A DuckDB result as a part: numbers (nullable ones too) as float64 with NaN, the rest as
    numpy arrays of objects."""
    if not frame[d.ENTITY_KEY].is_monotonic_increasing:
        frame = frame.sort_values(d.ENTITY_KEY, ignore_index=True)
    part: Part = {}
    for name in frame.columns:
        col = frame[name]
        if name == d.ENTITY_KEY:
            part[name] = col.to_numpy()
        elif col.dtype.kind in "iufb":
            part[name] = col.to_numpy(dtype="float64", na_value=np.nan)
        else:
            part[name] = col.to_numpy()
    return part


def _arrow_part(table: pa.Table) -> Part:
    """A DuckDB result read as Arrow as a part, as `_part` reads one: numbers (and booleans)
    as float64 with NaN, anything else as numpy arrays of Python objects."""
    eids = table[d.ENTITY_KEY].to_numpy()
    order = None if bool(np.all(eids[1:] >= eids[:-1])) else np.argsort(eids, kind="stable")
    part: Part = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        kind = col.type
        if name == d.ENTITY_KEY:
            values = eids
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or \
                pa.types.is_boolean(kind) or pa.types.is_decimal(kind):
            values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            values = np.empty(len(col), dtype=object)
            values[:] = col.to_pylist()
        part[name] = values if order is None else values[order]
    return part


def _source_features(table: str, types: tuple[EventType, ...]) -> tuple[str, ...]:
    """The feature columns of one source's step: the registry's, and usage's event types."""
    names = d.SOURCE_BY_TABLE[table].features
    if table == "usage_events":
        names += tuple(f.name for t in types for f in event_type_features(t.slug))
    return names


class _Runner:
    cursor: duckdb.DuckDBPyConnection
    types: tuple[EventType, ...] = ()
    fallback_included = False
    """The parts already hold usage's days-since fallback (`with_fallback`)."""

    def connected(self) -> frozenset[str]:
        return connected_tables(self.cursor)

    def run(self, name: str, build: Build, keys: pd.DataFrame) -> Part:
        raise NotImplementedError

    def frames(self, steps: list[tuple[str, Build]], keys: pd.DataFrame,
               report: Progress) -> list[Part]:
        """One part per step: the profile with `_known`, then each source's `_eid` and
        features."""
        parts = []
        for i, (name, build) in enumerate(steps):
            report(name, i / (len(steps) + 1))
            part = self.run(name, build, keys)
            if name != "accounts":
                part = {c: part[c] for c in (d.ENTITY_KEY, *_source_features(name, self.types))}
            parts.append(part)
        return parts

    def close(self) -> None:
        pass


class _Batch(_Runner):
    """Many entities in DuckDB. The sources' steps run SQL compiled once per warehouse schema
    (`_batch_sql`), the entities' time range bound as statement parameters: the engine skips
    rows outside every window before reading them, as with literal bounds, without building
    and compiling the expressions again on every call (as costly as the statements
    themselves for a few thousand entities). The profile, whose columns are of the
    customer's types (custom attributes), is compiled per call and read through Ibis."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> None:
        # Ibis changes session settings (timezone, Python replacement scans) of the connection
        # it wraps: give it a cursor of our own so the caller's connection stays as it was.
        self.cursor = con.cursor()
        self.backend = ibis.duckdb.from_connection(self.cursor)
        self.cfg = cfg
        self.shape = catalog_read(con, "shape", lambda: shape_of(self.cursor))
        self.columns = {t: {c for c, _ in cols} for t, cols in self.shape}

    def connected(self) -> frozenset[str]:
        return frozenset(self.columns)

    def run(self, name: str, build: Build, keys: pd.DataFrame) -> Part:
        if name != "accounts":
            return self._run_compiled(name, keys)
        ent = ibis.memtable(keys)
        ids = sorted(keys["account_id"].unique())

        def source(table: str, older: bool = False) -> ir.Table:
            raw = self.backend.table(table)
            # The columns the shape leaves out (see shape_of) are read as absent.
            raw = raw.select(*[c for c in raw.columns if c in self.columns[table]])
            return d.restrict(raw, ent, ids, literal_max=self.cfg.literal_account_filter_max)

        return _part(self.backend.execute(build(ent, source)))

    def _run_compiled(self, name: str, keys: pd.DataFrame) -> Part:
        compiled = _batch_sql(self.shape, self.cfg.attribute_prefix, name, self.types)
        bounds = {"earliest": keys["as_of"].min(), "latest": keys["as_of"].max()}
        self.cursor.register(BATCH_ENTITY_VIEW, pa.Table.from_pandas(
            keys, schema=ENTITY_SCHEMA.to_pyarrow(), preserve_index=False))
        try:
            table = self.cursor.sql(compiled.sql, params={
                k: v.to_pydatetime() for k, v in bounds.items() if k in compiled.parameters
            }).to_arrow_table()
        finally:
            self.cursor.unregister(BATCH_ENTITY_VIEW)
        return _arrow_part(table)

    def close(self) -> None:
        self.cursor.close()


BATCH_ENTITY_VIEW = "_healthscore_batch_entities"


@functools.lru_cache(maxsize=64)
def _batch_sql(shape: Shape, prefix: str, step: str, types: tuple[EventType, ...] = ()
               ) -> duckdb_sql.Compiled:
    """DuckDB SQL of one source's step for a warehouse schema: the entities are the view
    `BATCH_ENTITY_VIEW` (the sources restricted to their accounts by a semi join on it, which
    DuckDB turns into a filter on the scan), the time bounds the parameters `$earliest` and
    `$latest` (the entities' first and last as_of)."""
    tables = {
        name: ibis.table(ibis.schema([(c, DuckDBType.from_string(t)) for c, t in cols]),
                         name=name)
        for name, cols in shape
    }
    ent = ibis.table(ENTITY_SCHEMA, name=BATCH_ENTITY_VIEW)
    bounds = (duckdb_sql.parameter("earliest", "timestamp"),
              duckdb_sql.parameter("latest", "timestamp"))
    return duckdb_sql.compile_expr(_step_expr(tables, ent, prefix, step, types, bounds))


def _step_expr(tables: dict[str, ir.Table], ent: ir.Table, prefix: str, step: str,
               types: tuple[EventType, ...], as_of_range: tuple[ir.Value, ir.Value] | None
               ) -> ir.Table:
    """The expression of one step (or of all of them side by side, `ALL_STEPS`) over unbound
    tables, with no per-call literal: sources restricted by a semi join on `ent`, their time
    bounds from `ent` itself or `as_of_range`."""
    lookback = {s.table: s.lookback_days for s in d.SOURCES}

    def source(table: str, older: bool = False) -> ir.Table:
        return d.restrict(
            tables[table], ent, None, time_column=contract_table(table).time_column,
            lookback_days=lookback.get(table), before_lookback=older, as_of_range=as_of_range,
        )

    builds = dict(_steps(frozenset(tables), prefix, types))
    if step == ALL_STEPS:
        return _side_by_side(ent, source, builds, types)
    return (_older_usage if step == FALLBACK else builds[step])(ent, source)


ENTITY_VIEW = "_healthscore_entities"
Shape = sqlite_engine.Shape
READ_TABLES = ("accounts", *(s.table for s in d.SOURCES))
"""The tables the definitions read (labels' tables are not among them)."""
_CURSOR_LOCK = threading.Lock()
_ROWS_LOCK = threading.Lock()


class _Online(_Runner):
    """A few entities (the online path): their rows fetched from the warehouse (one small
    DuckDB statement per table, or slices of the rows `warm_online` holds in memory), and all
    steps side by side run on SQLite (`features/sqlite_engine.py`), compiled once per warehouse
    schema: several times cheaper for one account than the same definitions as one DuckDB 2.0
    prepared statement, which binds and optimises again on every execution (bench/RESULTS.md).
    The schema is read on every call (ingestion may have replaced tables), once per connection
    for a read-only warehouse (`features.contract.warehouse.catalog_read`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> None:
        with _CURSOR_LOCK:  # concurrent calls may share one connection
            self.cursor = con.cursor()
        self.prefix = cfg.attribute_prefix
        self.shape = catalog_read(con, "shape", lambda: shape_of(self.cursor))
        # Rows held in memory by warm_online (a long-lived reader's choice: for a one-off
        # call, reading the whole warehouse would cost far more than it saves).
        self.rows: AccountRows | None = held_rows(con) if cfg.online_row_index_max_rows \
            else None

    def connected(self) -> frozenset[str]:
        return frozenset(table for table, _ in self.shape)

    def frames(self, steps: list[tuple[str, Build]], keys: pd.DataFrame,
               report: Progress) -> list[Part]:
        report("features", 0.0)
        return [self._run(ALL_STEPS, keys, older=False)]

    def run(self, name: str, build: Build, keys: pd.DataFrame) -> Part:
        if name != FALLBACK:
            raise ValueError(f"the online runner runs every step in one statement, not {name}")
        # Its own small statement over the entities' older usage rows, run only when an entity
        # has no usage inside the lookback (rare online): the main fetch stays small.
        return self._run(FALLBACK, keys, older=True)

    def _run(self, step: str, keys: pd.DataFrame, *, older: bool) -> Part:
        tables = sqlite_engine.tables_read(
            self.shape, ["usage_events"] if older else READ_TABLES)
        if self.rows is not None:
            rows = self.rows.fetch(tables, keys, older=older)
        else:
            rows = sqlite_engine.fetch(self.cursor, self.shape, tables, keys, older=older)
        scratch = sqlite_engine.scratch(self.shape, ENTITY_VIEW)
        part = scratch.run(_online_sql(self.shape, self.prefix, step, self.types), rows, keys)
        order = np.argsort(part[d.ENTITY_KEY], kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            part = {c: v[order] for c, v in part.items()}
        return part

    def close(self) -> None:
        self.cursor.close()


def warm_online(con: duckdb.DuckDBPyConnection, cfg: FeatureConfig) -> AccountRows | None:
    """Do ahead of time what the first online call on `con` would: compile the online SQL for
    the warehouse's schema and, for a read-only warehouse, hold its rows in memory (slow on a
    large warehouse: a service does it at start-up, not in its first request). Returns the
    rows held, if any."""
    runner = _Online(con, cfg)
    try:
        types = event_types(con, cfg) if "usage_events" in runner.connected() else ()
        for step in (ALL_STEPS, FALLBACK):
            _online_sql(runner.shape, cfg.attribute_prefix, step, types)
        if not cfg.online_row_index_max_rows or not is_read_only(con):
            return None
        with _ROWS_LOCK:
            return catalog_read(con, "account_rows", lambda: AccountRows.load(
                runner.cursor, runner.shape, sqlite_engine.tables_read(runner.shape,
                                                                       READ_TABLES),
                max_rows=cfg.online_row_index_max_rows))
    finally:
        runner.close()


def held_rows(con: duckdb.DuckDBPyConnection) -> AccountRows | None:
    """The rows warm_online holds in memory for this connection, if any."""
    rows = remembered(con, "account_rows")
    return rows if isinstance(rows, AccountRows) else None


def shape_of(con: duckdb.DuckDBPyConnection) -> Shape:
    """The contract tables present and their columns' types: all a compiled query depends on.
    A usage_events.user_id with no value at all is left out, as if the column were absent."""
    rows = con.execute(
        "select table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' "
        "order by table_name, column_index"
    ).fetchall()
    known = {t.name for t in TABLES}
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        if table in known:
            tables.setdefault(table, []).append((column, dtype))
    usage = tables.get("usage_events", [])
    if any(c == "user_id" for c, _ in usage) and not con.execute(
            "select count(*) from (select 1 from usage_events where user_id is not null "
            "limit 1)").fetchall()[0][0]:
        # Usage without a single user id is usage without users: the definitions read the
        # column as absent, so the features counting users are missing, not constant.
        tables["usage_events"] = [(c, t) for c, t in usage if c != "user_id"]
    return tuple((t, tuple(cols)) for t, cols in sorted(tables.items()))


@functools.lru_cache(maxsize=64)
def _online_sql(shape: Shape, prefix: str, step: str, types: tuple[EventType, ...] = ()
                ) -> sqlite_engine.Compiled:
    """SQLite SQL of one step, compiled by Ibis from the definitions with no per-call literal:
    sources are restricted by a semi join on the entity table. The event types are part of
    the compiled form (their names are literals of it), decided per warehouse, not per call."""
    tables = {
        name: ibis.table(
            ibis.schema([(c, sqlite_engine.ibis_type(t)) for c, t in cols]), name=name
        )
        for name, cols in shape
    }
    ent = ibis.table(ENTITY_SCHEMA, name=ENTITY_VIEW)
    expr = _step_expr(tables, ent, prefix, step, types, None)
    return sqlite_engine.compile_expr(expr)


ALL_STEPS = "*"


def _side_by_side(ent: ir.Table, source: Source, builds: dict[str, Build],
                  types: tuple[EventType, ...] = (),
                  keep: tuple[str, ...] = (d.ENTITY_KEY,)) -> ir.Table:
    """Every step's columns in one row per entity, so a call is one statement, not seven (each
    statement has a fixed cost larger than one account's rows). Usage's fallback on the rows
    before its lookback is not in it: as on the batch path, it runs only for the entities left
    without an activity date (in the statement it would add to every call's cost, for a value
    almost every active account already has)."""
    out = ent.select(*keep)
    for name, build in builds.items():
        frame = build(ent, source)
        if name == "usage_events":
            frame = frame.select(d.ENTITY_KEY, *_source_features(name, types))
        out = d.attach(out, frame)
    return out


def with_fallback(ent: ir.Table, source: Source, frame: ir.Table) -> ir.Table:
    """`frame` (one row per entity, with usage's days_since_last_activity) with the fallback
    on the rows before the usage lookback folded in: for an engine whose statements cost
    little next to a second round trip (Spark), one statement for every entity instead of a
    second one for the entities left without an activity date. Same values either way: the
    lookback's value when there is one, else the older rows'."""
    older = _older_usage(ent, source).rename(_older_days="days_since_last_activity")
    joined = d.attach(frame, older)
    return joined.mutate(days_since_last_activity=ibis.coalesce(
        joined.days_since_last_activity, joined._older_days)).drop("_older_days")


def side_by_side_features(ent: ir.Table, source: Source, connected: frozenset[str],
                          cfg: FeatureConfig, types: tuple[EventType, ...]) -> ir.Table:
    """Every feature column (raw, before `assemble_rows`) of each entity of `ent` in one
    expression: `_eid`, `account_id`, `as_of`, the profile's `_known`, then each connected
    source's features, the fallback included. What an engine that runs the whole build as
    one job (Spark) executes."""
    builds = dict(_steps(connected, cfg.attribute_prefix, types))
    frame = _side_by_side(ent, source, builds, types,
                          keep=(d.ENTITY_KEY, "account_id", "as_of"))
    if "usage_events" in connected:
        frame = with_fallback(ent, source, frame)
    return frame


def assemble_rows(rows: pd.DataFrame, cfg: FeatureConfig,
                  types: tuple[EventType, ...] = ()) -> pd.DataFrame:
    """The feature frame (registry order and dtypes, as `build_features` returns it) of rows
    of `side_by_side_features` run on any engine: one row per distinct entity. Spark's
    per-partition scoring assembles each partition with it."""
    ents = validate_entities(rows[list(ENTITY_COLUMNS)])
    keys = pd.DataFrame({d.ENTITY_KEY: np.arange(len(rows), dtype="int64"),
                         "account_id": ents["account_id"].to_numpy(),
                         "as_of": ents["as_of"].to_numpy()})
    part = _part(rows.drop(columns=["account_id", "as_of"]).assign(
        **{d.ENTITY_KEY: keys[d.ENTITY_KEY].to_numpy()}))
    _check_known(part, keys, ents)
    return _assemble(ents, keys, [part], cfg, ents["as_of"], types)


ENTITY_SCHEMA = ibis.schema({d.ENTITY_KEY: "int64", "account_id": "string", "as_of": "timestamp"})


def _check_known(profile: Part, keys: pd.DataFrame, ents: pd.DataFrame) -> None:
    unknown = ~profile["_known"].astype(bool)
    if unknown.any():
        first = keys.loc[unknown, "account_id"].iloc[0]
        row = int(np.argmax(ents["account_id"].to_numpy() == first)) + 1
        raise EntityError(
            f"entities row {row}, column account_id: {first!r} is not in the accounts table "
            f"({int(unknown.sum())} unknown account id(s))"
        )


def _fill_old_activity(runner: _Runner, part: Part, keys: pd.DataFrame) -> Part:
    """days_since_last_activity beyond the usage lookback, for the entities that need it."""
    days = part["days_since_last_activity"]
    todo = pd.isna(days)
    if not todo.any():
        return part
    sub = keys.loc[todo].reset_index(drop=True)
    older = runner.run(FALLBACK, _older_usage, sub)
    filled = dict(zip(older[d.ENTITY_KEY].tolist(), older["days_since_last_activity"].tolist(),
                      strict=True))
    days = days.astype("float64")  # a copy: the part is not changed in place
    eids = part[d.ENTITY_KEY]
    for i in np.flatnonzero(todo):
        value = filled.get(eids[i])
        days[i] = np.nan if value is None or pd.isna(value) else value
    return {**part, "days_since_last_activity": days}


def _assemble(
    ents: pd.DataFrame,
    keys: pd.DataFrame,
    parts: list[Part],
    cfg: FeatureConfig,
    as_of: pd.Series,
    types: tuple[EventType, ...] = (),
) -> pd.DataFrame:
    """Registry order and dtypes, one row per input entity row in the input order.

    Kept cheap for a few rows (the online path): pandas' per-call overhead, not the data, is
    what a one-row frame costs, so the common cases skip the general joins."""
    n = len(keys)
    eids = keys[d.ENTITY_KEY].to_numpy()
    by_key: dict[str, np.ndarray] = {}
    for part in parts:
        # Every part has one row per entity in key order (each definition does); anything
        # else is put in key order, missing entities missing.
        pos = None if np.array_equal(part[d.ENTITY_KEY], eids) else \
            _positions(part[d.ENTITY_KEY], eids)
        for name, values in part.items():
            if name != d.ENTITY_KEY:
                by_key[name] = values if pos is None else _take(values, pos)
    attrs = [c for c in parts[0] if c.startswith(cfg.attribute_prefix)]
    columns: dict[str, object] = {}
    for spec in FEATURES:
        col = by_key.get(spec.name)
        if spec.dtype == "category":
            columns[spec.name] = _category(col, n)
        elif col is None:
            columns[spec.name] = np.full(n, np.nan)
        elif col.dtype.kind in "iufb":
            columns[spec.name] = col.astype("float64")
        else:
            columns[spec.name] = pd.to_numeric(pd.Series(col), errors="raise"
                                               ).astype("float64").to_numpy()
    for t in types:
        for spec in event_type_features(t.slug):
            col = by_key.get(spec.name)
            # Usage not connected: like every usage feature, missing.
            columns[spec.name] = np.full(n, np.nan) if col is None else col.astype("float64")
    for name in attrs:
        columns[name] = _attribute(by_key[name])
    account_id = pd.Series(ents["account_id"].to_numpy(), dtype=_text())
    if len(ents) == n:
        # No duplicate entity rows: the distinct entities are the input rows, in order.
        return pd.DataFrame({"account_id": account_id, "as_of": as_of, **columns})
    # Map each input row to its distinct entity: merge keeps the left order.
    pos = ents.merge(keys, on=list(ENTITY_COLUMNS), how="left")[d.ENTITY_KEY].to_numpy()
    out = pd.DataFrame(columns).iloc[pos].reset_index(drop=True)
    out.insert(0, "as_of", as_of)
    out.insert(0, "account_id", account_id)
    return out


def _positions(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each key of `want`, its row in `have` (-1 when absent)."""
    row = {k: i for i, k in enumerate(have.tolist())}
    return np.array([row.get(k, -1) for k in want.tolist()], dtype=np.int64)


def _take(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    missing = pos < 0
    if not missing.any():
        return values[pos]
    out = values.astype("float64" if values.dtype.kind in "iufb" else object)[pos]
    out[missing] = np.nan
    return out


def _objects(values: np.ndarray) -> np.ndarray:
    """Text-or-missing values with every missing one as np.nan (None, pd.NA and NaN alike)."""
    out = values.astype(object)
    out[pd.isna(out)] = np.nan
    return out


def _category(col: np.ndarray | None, n: int) -> pd.Categorical:
    if col is None:
        return pd.Categorical([np.nan] * n)
    return _categorical(_objects(col))


def _categorical(values: np.ndarray) -> pd.Categorical:
    """`pd.Categorical(values)` for text-or-NaN values (what every categorical feature holds),
    built from codes: its inference is most of a one-row frame's assembly (bench/RESULTS.md).
    Categories are the sorted distinct texts either way; anything else (or no
    text at all) goes through `pd.Categorical` itself."""
    texts = {v for v in values if isinstance(v, str)}
    if not texts or len(values) != sum(isinstance(v, str) or v is np.nan for v in values):
        return pd.Categorical(values)
    levels = sorted(texts)
    code = {level: k for k, level in enumerate(levels)}
    codes = np.fromiter((code.get(v, -1) for v in values), dtype=np.int8 if len(levels) < 127
                        else np.int64, count=len(values))
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(levels,
                                                                               dtype=_text())))


@functools.cache
def _text() -> pd.api.extensions.ExtensionDtype:
    """pandas' "str" dtype, resolved once: resolving the alias reads pandas' options each
    time."""
    return pd.api.types.pandas_dtype("str")


def _attribute(values: np.ndarray) -> object:
    """Numeric (and boolean) custom attributes stay float; anything else becomes a category."""
    if values.dtype.kind in "iufb":
        return values.astype("float64")
    if values.dtype == object:
        objects = _objects(values)
        if all(isinstance(v, str) or v is np.nan for v in objects):
            # Text already: what the general branch below makes of it, without its passes.
            return _categorical(objects)
        non_null = [v for v in objects if v is not np.nan]
        # Booleans with NULLs, and DECIMAL columns (read as Python Decimals), are numbers too.
        if non_null and all(isinstance(v, bool | Decimal) for v in non_null):
            return np.array([np.nan if v is np.nan else float(v) for v in objects])
    col = pd.Series(values)
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
    return _category(col.astype(object).where(col.notna(), None).map(
        lambda v: v if v is None or isinstance(v, str) else str(v)).to_numpy(), len(col))


def write_features(frame: pd.DataFrame, path: Path) -> Path:
    """Write a feature frame to `.parquet` (dtypes kept) or `.csv`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: write features to a .parquet or .csv file")
    return path
