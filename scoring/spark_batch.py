"""Batch scoring on Spark: every active account's rules score, six probabilities and top
factors, written as Parquet.

The features are built on Spark by the same definitions as on DuckDB
(`features.spark_engine.SparkWarehouse.feature_frame`), for the scoring date and the trend date
in one job; each account's two rows become one (`prev__` columns), and `mapInPandas` applies
`scoring.batch.partition_scores` (the pipeline's `score_built`) to every Arrow batch. The
models travel once: the bundles are a Spark broadcast variable, read once per Python worker
and grouped into a ModelSet there. Previous scores for the trend are recomputed from the trend
date's features (the score store is not read from the executors); `healthscore score
--engine spark --store` then writes the table into the score store through the daily job's
own path (`serving.events.record_daily`).

pyspark is imported only inside these functions (the `spark` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.event_types import event_types
from features.settings import FeatureConfig
from scoring.batch import PREVIOUS, partition_scores, table_columns
from scoring.model_set import flatten, model_set
from scoring.pipeline import Scorer, feature_config, plan_scores

Progress = Any


@dataclass(frozen=True)
class SparkBatch:
    """What a Spark batch wrote: where, for which date, how many accounts."""

    out: str
    as_of: date
    accounts: int


def spark_schema(labels: list[str]) -> str:
    """The batch table's Spark DDL schema."""
    return ", ".join(f"`{name}` {kind}" for name, kind in table_columns(labels))


def score_on_spark(warehouse: Any, as_of: date | str | None, scorer: Scorer, out: str, *,
                   top_k: int = 3, progress: Progress | None = None) -> SparkBatch:
    """Score every account active at `as_of` (None: the data's today) on Spark and write
    the batch table (`scoring.batch.table_columns`) to the Parquet folder `out` (replaced)."""
    from pyspark.sql import functions as F

    report = progress or (lambda _step, _done: None)
    plan = plan_scores(warehouse, None, as_of, scorer, trend=True, progress=report)
    cfg: FeatureConfig = feature_config(scorer)
    types = event_types(warehouse, cfg) if "usage_events" in plan.connected else ()
    keys = plan.entities.assign(_eid=np.arange(len(plan.entities), dtype="int64"))[
        ["_eid", "account_id", "as_of"]]
    report("features", 0.0)
    # Held once: the current and the trend rows are read from the same build.
    raw = warehouse.feature_frame(keys, cfg, types).persist()
    current = raw.filter(F.col("_eid") < plan.n_current)
    previous = raw.filter(F.col("_eid") >= plan.n_current)
    previous = previous.select(F.col("account_id").alias("_prev_account"),
                               *[F.col(c).alias(PREVIOUS + c) for c in raw.columns
                                 if c != "account_id"])
    session = warehouse.session
    accounts = session.createDataFrame(plan.accounts[["account_id", "name", "created_at",
                                                      "churned_at"]].astype(
        {"created_at": "datetime64[us]", "churned_at": "datetime64[us]"}))
    rows = (current.join(accounts, "account_id", "left")
            .join(previous, F.col("account_id") == F.col("_prev_account"), "left")
            .drop("_prev_account"))

    models = scorer.models
    bundles = session.sparkContext.broadcast(
        flatten({e.label: e.bundle for e in models.entries}) if models is not None else {})
    light = replace(scorer, models=None)
    labels = list(models.labels) if models is not None else []
    when, connected = plan.when, plan.connected

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Once per Python worker: the broadcast value and its ModelSet are cached there.
        held = bundles.value
        full = replace(light, models=model_set(held) if held else None,
                       models_note=light.models_note)
        for batch in batches:
            if len(batch):
                yield partition_scores(batch, when, full, connected, cfg, types, top_k)

    report("scoring", 0.0)
    table = rows.mapInPandas(score_batches, schema=spark_schema(labels))
    table.write.mode("overwrite").parquet(out)
    report("scoring", 1.0)
    written = session.read.parquet(out).count()
    bundles.unpersist()
    raw.unpersist()
    return SparkBatch(out=out, as_of=when.date(), accounts=int(written))


def read_batch(warehouse: Any, out: str) -> pd.DataFrame:
    """The batch table at `out` on the driver (for the score store), from any URL Spark
    reads."""
    return warehouse.session.read.parquet(out).toPandas()
