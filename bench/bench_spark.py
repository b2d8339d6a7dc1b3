"""Bench: the Spark engine in local mode (local[2]): feature-build throughput at about 1 M and
10 M usage events, and batch scoring (features, rules score, six probabilities, top factors,
Parquet out) in accounts per second at 100,000 accounts. DuckDB on the same Parquet tables is
shown beside each feature build for reference.

Worlds come from the project's generator (`features.synth.generate`), written as Parquet under
bench/out/spark/ and reused (`--fresh` rebuilds them). The six models are tiny LightGBM
bundles fitted on the smallest world (the ones the tests use): the figures measure the engine
and the scoring path, not model size. One Spark session for the whole run; its start is timed
on its own row.

    .venv/bin/python bench/bench_spark.py [--small] [--fresh] [--only features|score]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

OUT = Path(__file__).parent / "out" / "spark"
START = date(2024, 1, 1)
# (accounts, days): about 1 M and 10 M usage events (bench/RESULTS.md: 10,000 x 730 gives
# 20.6 M), and 100,000 accounts over a short history for batch scoring.
FEATURE_WORLDS = {"1M": (500, 730), "10M": (5000, 730)}
SCORE_WORLD = (100_000, 45)
SMALL = {"features": {"100k": (60, 730)}, "score": (5000, 45)}


def world(accounts: int, days: int, fresh: bool) -> Path:
    from features.synth.generate import generate_world, write_world

    folder = OUT / f"{accounts}x{days}"
    if fresh or not (folder / "accounts.parquet").exists():
        write_world(generate_world(accounts, START, days, seed=7), folder, "parquet")
    return folder


def usage_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(folder / "usage_events.parquet").metadata.num_rows


def models(fresh: bool) -> Path:
    import duckdb

    from features.contract.warehouse import load_frames
    from features.synth.generate import generate_world
    from tests.support.service_fixtures import train_bundles

    folder = OUT / "models"
    if fresh or not (folder / "churn_90d").exists():
        warehouse = OUT / "models_world.duckdb"
        warehouse.unlink(missing_ok=True)
        con = duckdb.connect(str(warehouse))
        load_frames(con, generate_world(150, START, 400, seed=11).tables)
        con.close()
        train_bundles(warehouse, folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny worlds (a smoke run)")
    parser.add_argument("--fresh", action="store_true", help="regenerate the worlds")
    parser.add_argument("--only", choices=("features", "score"), default=None)
    parser.add_argument("--parquet-world", type=Path, default=None,
                        help="also (with --only features: only) build the features of this "
                             "contract Parquet folder, e.g. a 100 M-event replica")
    parser.add_argument("--driver-memory", default=None,
                        help="spark.driver.memory (local mode: all of Spark), e.g. 6g")
    args = parser.parse_args(argv)

    from features.build import build_features
    from features.entities import build_entities
    from features.settings import FeatureConfig, SparkConfig
    from features.sources import parquet_duckdb
    from features.spark_engine import SparkWarehouse, spark_session
    from healthscore.settings import load_settings
    from scoring.cli_support import scorer_of
    from scoring.spark_batch import score_on_spark

    console = Console()
    rows: list[tuple[str, str, int, float, str]] = []

    class Rows(list):  # each figure printed as soon as it is measured (long runs)
        def append(self, row: tuple[str, str, int, float, str]) -> None:
            console.print(f"{row[0]} | {row[1]} | {row[2]:,} | {row[3]:.1f} s | {row[4]}")
            super().append(row)

    rows = Rows()
    spark = SparkConfig(**({"driver_memory": args.driver_memory} if args.driver_memory else {}))
    t0 = time.perf_counter()
    spark_session(spark)
    rows.append(("spark session start (local[2])", "-", 0, time.perf_counter() - t0, ""))
    cfg = FeatureConfig()
    worlds = SMALL["features"] if args.small else FEATURE_WORLDS
    folders = {name: (world(accounts, days, args.fresh), f"{accounts:,}x{days}")
               for name, (accounts, days) in worlds.items()
               if args.parquet_world is None or args.only != "features"}
    if args.parquet_world is not None:
        folders[args.parquet_world.name] = (args.parquet_world, "given folder")
    if args.only in (None, "features"):
        for name, (folder, size) in folders.items():
            events = usage_rows(folder)
            duck = parquet_duckdb(folder)
            from features.contract.warehouse import today

            when = today(duck)
            entities = build_entities(duck, [when])
            t0 = time.perf_counter()
            build_features(duck, entities, cfg)
            seconds = time.perf_counter() - t0
            rows.append((f"features {name}: duckdb on the Parquet", size,
                         events, seconds, f"{events / seconds:,.0f} events/s"))
            duck.close()
            t0 = time.perf_counter()
            with SparkWarehouse(folder, spark) as wh:
                opened = time.perf_counter() - t0
                t0 = time.perf_counter()
                frame = build_features(wh, entities, cfg)
                seconds = time.perf_counter() - t0
            assert len(frame) == len(entities)
            rows.append((f"features {name}: spark open (schemas, driver tables)",
                         size, events, opened, ""))
            rows.append((f"features {name}: spark build", size, events,
                         seconds, f"{events / seconds:,.0f} events/s"))
    if args.only in (None, "score"):
        accounts, days = SMALL["score"] if args.small else SCORE_WORLD
        folder = world(accounts, days, args.fresh)
        settings = load_settings(paths={"models_dir": str(models(args.fresh))})
        scorer = scorer_of(settings)
        with SparkWarehouse(folder, spark) as wh:
            t0 = time.perf_counter()
            batch = score_on_spark(wh, None, scorer, str(OUT / f"batch_{accounts}"),
                                   top_k=settings.health.batch_top_factors)
            seconds = time.perf_counter() - t0
        out = pd.read_parquet(OUT / f"batch_{accounts}")
        assert np.isfinite(out["score"]).any() and len(out) == batch.accounts
        rows.append(("batch score on spark (features x2 dates, rules, 6 models, top factors, "
                     "parquet)", f"{accounts:,}x{days}", batch.accounts, seconds,
                     f"{batch.accounts / seconds:,.0f} accounts/s"))

    load = os.getloadavg()
    table = Table(title=f"bench_spark: Spark local[2] vs DuckDB (load average at the end "
                        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f})")
    for col in ("step", "world", "rows", "seconds", "throughput"):
        table.add_column(col, justify="left" if col in ("step", "world") else "right")
    for step, size, count, seconds, rate in rows:
        table.add_row(step, size, f"{count:,}", f"{seconds:.1f}", rate)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
