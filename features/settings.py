"""Settings sections of the features layer: where the data lives and how features are built.

Every part owns its section; `healthscore.settings.Settings` composes them into the one typed
object an entry point builds once. `Section` is the base all sections share: unknown keys are an
error and a section never changes once built.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of every settings section."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(Section):
    data_dir: Path = Path("data/raw")
    """Folder of input tables (one file per table)."""
    warehouse: Path = Path("data/warehouse.duckdb")
    store_url: str = "sqlite:///data/scores.db"
    """SQLAlchemy URL of the score store (scores, alerts, events)."""
    mlflow_uri: str = "sqlite:///mlruns.db"
    mlflow_artifacts: Path = Path("mlruns")
    models_dir: Path = Path("models")
    batch_scores: str = "data/batch_scores"
    """Folder or URL under which `score --engine spark` writes its Parquet batch tables."""


class FeatureConfig(Section):
    windows: tuple[int, ...] = (7, 30, 90)
    attribute_prefix: str = "attr_"
    top_event_types: int = Field(8, ge=0)
    """Event types (`usage_events.event`) with features of their own: the N most frequent of
    the warehouse (features/event_types.py); 0 for none."""
    event_types: tuple[str, ...] | None = None
    """Exactly these event types (slugs, as in `event_<slug>_30d`) instead of the most frequent:
    what a model was trained with (the scoring pipeline sets it from the model's features)."""
    online_max_entities: int = Field(100, ge=0)
    """Up to this many distinct entity rows (the online path), fetch the entities' rows and run
    the definitions on SQLite, compiled once per warehouse schema (features/sqlite_engine.py),
    cheaper than the batch path for that many entities; beyond it, run them in DuckDB,
    compiled once per warehouse schema with the entities' time range as statement
    parameters."""
    online_row_index_max_rows: int = Field(10_000_000, ge=0)
    """For a read-only warehouse (the service's snapshot) of up to this many rows in the tables
    the definitions read, hold them in memory by account (features/account_rows.py): the
    online path then slices an account's rows instead of running a DuckDB statement per table.
    Costs the rows' memory (bench/RESULTS.md); 0 turns it off."""
    literal_account_filter_max: int = Field(1000, ge=0)
    """Up to this many entity accounts, the Spark engine's sources and the batch path's accounts
    are filtered with a literal IN list (pushed into the scan: a one-account build reads
    little); beyond it, with a semi join on the entities. The batch path's other sources always
    use the semi join, which DuckDB turns into a filter on the scan as cheap as the list."""


class SparkConfig(Section):
    """The Spark engine (`--engine spark`, features/spark_engine.py): where it runs and how
    small it stays. The defaults fit one machine of 2 cores (tests, a laptop); a cluster sets
    `master` (or `spark-submit --master`, which wins) and more shuffle partitions."""

    master: str = "local[2]"
    """Spark master URL: `local[N]` in-process, `spark://host:7077`, `yarn`, `k8s://...`."""
    app_name: str = "healthscore"
    shuffle_partitions: int = Field(4, ge=1)
    """`spark.sql.shuffle.partitions`: Spark's default of 200 is slow for small data on 2
    cores; a cluster wants a few per executor core."""
    driver_memory: str = "2g"
    """`spark.driver.memory` of a session this process starts (local mode: all of Spark)."""
    arrow_batch_rows: int = Field(10_000, ge=1)
    """Rows per Arrow batch handed to the per-partition scoring function (memory per call)."""
    conf: dict[str, str] = Field(default_factory=dict)
    """Further Spark settings, passed as they are (e.g. `spark.executor.memory`)."""
