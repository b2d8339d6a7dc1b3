"""The Spark engine: the same feature definitions run by Ibis's PySpark backend.

A `SparkWarehouse` is the input contract read from Parquet (`<table>.parquet`, a file or a
folder of part files, under a local path or any URL Spark reads: `s3a://`, `hdfs://`,
`abfss://`), registered as Spark tables. `build_features(warehouse, entities, cfg)` runs on it
exactly as on DuckDB: the definitions of `features/definitions.py`, assembled by
`features/build.py`, executed as one Spark job (`side_by_side_features`) instead of one DuckDB
statement per source. The small tables that decide who is a customer (`accounts`,
`churn_events`) are also held on the driver in an in-memory DuckDB (`driver`), so entity
frames, statuses and names come from the same code as on the embedded path.

pyspark is an optional dependency (`pip install .[spark]`): it is imported here only, inside
the functions that start Spark, so nothing else needs it. A missing pyspark or Java is a
`SparkUnavailable` error with one line saying what to install or set.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd

from features import definitions as d
from features.build import _part, _Runner, side_by_side_features
from features.contract.tables import TABLES
from features.contract.tables import table as contract_table
from features.contract.warehouse import load_frames, today_from_end
from features.event_types import Counts, counts_of, event_counts_expr
from features.settings import FeatureConfig, SparkConfig

DRIVER_TABLES = ("accounts", "churn_events")
"""Held on the driver as well: who is a customer when (`features.entities`), and names."""
_VIEWS = itertools.count()


class SparkUnavailable(RuntimeError):
    """Spark cannot start here: pyspark is not installed or Java is not found."""


def java_executable() -> str:
    """The `java` Spark will start: JAVA_HOME's when set (Spark's own rule), else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise SparkUnavailable(
                f"Spark needs Java 17 or 21: JAVA_HOME={home} has no bin/java "
                "(point JAVA_HOME at a JDK, or unset it to use the java on PATH)")
        return str(java)
    found = shutil.which("java")
    if found is None:
        raise SparkUnavailable(
            "Spark needs Java 17 or 21: no java on PATH and JAVA_HOME is not set "
            "(install a JDK, e.g. `apt-get install openjdk-17-jre-headless`)")
    return found


def spark_session(cfg: SparkConfig) -> Any:
    """The process's Spark session with `cfg`'s settings (one per process: Spark's rule).

    Small by default for 2 cores: no UI, few shuffle partitions, Arrow for pandas. A session
    already running (spark-submit's) is reused as it is, apart from the SQL settings."""
    java_executable()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable(
            "the Spark engine needs pyspark: pip install 'healthscore[spark]'") from None
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if cfg.master.startswith("local"):
        # Local Python workers run this interpreter (its packages), not whatever python3 is.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.appName(cfg.app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", cfg.driver_memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
               .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC"))
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Started by spark-submit (it sets the gateway), its --master stands.
        builder = builder.master(cfg.master)
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: its reason, on one line
        reason = " ".join(str(exc).split())[:300]
        raise SparkUnavailable(f"Spark did not start ({cfg.master}): {reason}") from None
    session.sparkContext.setLogLevel("ERROR")
    conf = session.conf
    conf.set("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.arrow_batch_rows))
    return session


def _join(url: str, name: str) -> str:
    return f"{url.rstrip('/')}/{name}"


class SparkWarehouse:
    """The contract tables of a Parquet folder (or URL), as Spark tables and Ibis tables.

    A table without its `<table>.parquet` is not connected (its features are missing, as in
    the DuckDB warehouse). A usage table whose user_id holds no value at all is read without
    it, as `features.build.shape_of` does for DuckDB."""

    fallback_included = True

    def __init__(self, url: str | Path, cfg: SparkConfig, *, session: Any = None) -> None:
        self.url = str(url)
        self.session = session if session is not None else spark_session(cfg)
        self.backend = ibis.pyspark.connect(self.session)
        self.prefix = f"hs{next(_VIEWS)}_"
        self.tables: dict[str, ir.Table] = {}
        for spec in TABLES:
            frame = self._read(spec.name)
            if frame is None:
                continue
            view = self.prefix + spec.name
            frame.createOrReplaceTempView(view)
            self.tables[spec.name] = self.backend.table(view)
        if "accounts" not in self.tables:
            raise FileNotFoundError(
                f"{_join(self.url, 'accounts.parquet')}: no accounts table in {self.url} "
                "(the Spark engine reads one <table>.parquet per contract table)")
        usage = self.tables.get("usage_events")
        if usage is not None and "user_id" in usage.columns and usage.filter(
                usage.user_id.notnull()).limit(1).count().execute() == 0:
            self.tables["usage_events"] = usage.drop("user_id")
        self.connected = frozenset(self.tables)
        self.driver = duckdb.connect()
        load_frames(self.driver, {name: self.backend.to_pyarrow(self.tables[name]).to_pandas()
                                  for name in DRIVER_TABLES if name in self.tables})

    def _read(self, name: str) -> Any:
        from pyspark.errors import AnalysisException

        try:
            return self.session.read.parquet(_join(self.url, f"{name}.parquet"))
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" in str(getattr(exc, "getCondition", lambda: "")() or exc):
                return None
            raise

    # --- what build_features and the commands ask of a source ------------------------------
    def feature_runner(self, cfg: FeatureConfig) -> _Runner:
        return _SparkRunner(self, cfg)

    def event_counts(self) -> Counts:
        usage = self.tables.get("usage_events")
        if usage is None:
            return ()
        got = self.backend.execute(event_counts_expr(usage))
        return counts_of(zip(got["event"], got["n"], strict=True))

    def data_end(self) -> pd.Timestamp:
        """As `features.contract.warehouse.data_end`: midnight after the latest dated row."""
        maxima = [t[spec.time_column].max().cast("timestamp").name("m")
                  for spec in TABLES if spec.time_column and (t := self.tables.get(spec.name))
                  is not None]
        if not maxima:
            raise ValueError("the data has no dated table: cannot tell where the data ends")
        latest = max((v for v in self.backend.execute(
            ibis.union(*[m.as_table() for m in maxima]))["m"] if pd.notna(v)), default=None)
        if latest is None:
            raise ValueError("the dated tables are empty: cannot tell where the data ends")
        return pd.Timestamp(latest).normalize() + pd.Timedelta(days=1)

    def today(self, *, clock: date | None = None) -> date:
        try:
            end = self.data_end().date()
        except ValueError:
            end = None
        return today_from_end(end, clock)

    def entity_view(self, keys: pd.DataFrame) -> ir.Table:
        """The entity keys (`_eid`, account_id, as_of) as a Spark table."""
        frame = keys.astype({"as_of": "datetime64[us]"})
        view = f"{self.prefix}entities_{next(_VIEWS)}"
        self.session.createDataFrame(frame).createOrReplaceTempView(view)
        return self.backend.table(view)

    def feature_frame(self, keys: pd.DataFrame, cfg: FeatureConfig,
                      types: tuple[Any, ...]) -> Any:
        """A Spark DataFrame of `side_by_side_features` for the entity keys: one row per
        entity, not collected (the batch scorer maps over it)."""
        expr = self.feature_expr(self.entity_view(keys), keys, cfg, types)
        return self.session.sql(self.backend.compile(expr))

    def feature_expr(self, ent: ir.Table, keys: pd.DataFrame, cfg: FeatureConfig,
                     types: tuple[Any, ...]) -> ir.Table:
        lookback = {s.table: s.lookback_days for s in d.SOURCES}
        as_of_range = (keys["as_of"].min(), keys["as_of"].max())
        ids = sorted(keys["account_id"].unique())

        def source(table: str, older: bool = False) -> ir.Table:
            return d.restrict(
                self.tables[table], ent, ids,
                literal_max=cfg.literal_account_filter_max,
                time_column=contract_table(table).time_column,
                lookback_days=lookback.get(table), before_lookback=older,
                as_of_range=as_of_range,
            )

        return side_by_side_features(ent, source, self.connected, cfg, types)

    def close(self) -> None:
        """Drop this warehouse's views; the session stays (one per process, reused)."""
        self.driver.close()
        catalog = self.session.catalog
        for view in [t.name for t in catalog.listTables() if t.name.startswith(self.prefix)]:
            catalog.dropTempView(view)

    def __enter__(self) -> SparkWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SparkRunner(_Runner):
    """Every step side by side as one Spark job (the fallback folded in), collected."""

    fallback_included = True

    def __init__(self, warehouse: SparkWarehouse, cfg: FeatureConfig) -> None:
        self.warehouse = warehouse
        self.cfg = cfg

    def connected(self) -> frozenset[str]:
        return self.warehouse.connected

    def frames(self, steps: Any, keys: pd.DataFrame, report: Any) -> list[dict[str, Any]]:
        report("features (spark)", 0.0)
        wh = self.warehouse
        expr = wh.feature_expr(wh.entity_view(keys), keys, self.cfg, self.types)
        frame = wh.backend.execute(expr).drop(columns=["account_id", "as_of"])
        return [_part(frame)]

    def close(self) -> None:
        pass
