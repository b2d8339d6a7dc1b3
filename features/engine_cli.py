"""The `--engine` options the commands share (`features`, `score`), and opening the source they
name with one clear error line instead of a stack trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Engine = Annotated[str, typer.Option(
    "--engine", help="Where features are built: duckdb (embedded, the default) or spark.")]
Data = Annotated[str | None, typer.Option(
    "--data", help="Folder or URL of the contract tables as <table>.parquet (what --engine "
    "spark reads; with duckdb it replaces --warehouse) [default for spark: paths.data_dir].")]
Master = Annotated[str | None, typer.Option(
    "--master", help="Spark master URL, e.g. local[2], spark://host:7077, yarn "
    "[default: spark.master].")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` as one red line on stderr; the Exit to raise."""
    from rich.console import Console

    Console(stderr=True).print(f"error: {message}", style="red", markup=False, highlight=False,
                               soft_wrap=True)
    return typer.Exit(code)


def open_engine_source(settings: Any, engine: str, data: str | None,
                       warehouse: Path | None, master: str | None) -> Any:
    """The source of `engine`, or an Exit after one error line: an unknown engine (exit 2),
    Spark unavailable (no pyspark, no Java) or missing input (exit 1)."""
    from features.sources import check_engine, open_source
    from features.spark_engine import SparkUnavailable

    try:
        check_engine(engine)
    except ValueError as exc:
        raise fail(f"--engine: {exc}", 2) from None
    spark = settings.spark if master is None else settings.spark.model_copy(
        update={"master": master})
    if engine == "spark" and data is None:
        data = str(settings.paths.data_dir)
    try:
        return open_source(engine, warehouse=warehouse or settings.paths.warehouse, data=data,
                           spark=spark)
    except SparkUnavailable as exc:
        raise fail(str(exc)) from None
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None


def close_source(source: Any) -> None:
    source.close()
