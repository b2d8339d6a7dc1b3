"""What the commands of every layer share: the common options, the settings of the root command,
the rules named on the command line and the warehouse opened read-only with a clear error."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

AsOf = Annotated[datetime | None, typer.Option(
    "--as-of", formats=["%Y-%m-%d"],
    help="As-of date (YYYY-MM-DD) [default: the warehouse's today: the day after its last data, "
    "at the latest the wall clock's today].")]
Warehouse = Annotated[Path | None, typer.Option(
    "--warehouse", help="DuckDB warehouse [default: paths.warehouse].")]
StoreUrl = Annotated[str | None, typer.Option(
    "--store-url", help="SQLAlchemy URL of the score store [default: paths.store_url].")]
RulesFile = Annotated[Path | None, typer.Option(
    "--rules", help="Rules YAML [default: health.rules_file or the packaged rules].")]


def settings_of(ctx: typer.Context) -> Any:
    """The settings the root command built once (`healthscore --config FILE ...`)."""
    settings = ctx.find_root().obj
    if settings is None:
        raise RuntimeError("the root `healthscore` command builds the settings before any command")
    return settings


def rules_of(settings: Any, rules_file: Path | None) -> Any:
    from scoring.health import RulesError, load_rules_for

    health = settings.health
    if rules_file is not None:
        health = health.model_copy(update={"rules_file": rules_file})
    try:
        return load_rules_for(health)
    except RulesError as exc:
        raise typer.BadParameter(str(exc), param_hint="rules") from None


def open_warehouse(settings: Any, warehouse: Path | None) -> Any:
    from features.contract.warehouse import connect

    path = warehouse or settings.paths.warehouse
    try:
        return connect(path, read_only=True)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--warehouse") from None


def scorer_of(settings: Any, rules_file: Path | None = None, *, models: bool = True) -> Any:
    """The Scorer of `scoring.pipeline` that a command scores with: the rules (of `--rules` or
    the settings) and, unless `models=False`, the champion models of `paths.models_dir`."""
    from scoring.model_set import load_models
    from scoring.pipeline import Scorer

    found, note = load_models(settings.paths.models_dir) if models else (None, None)
    return Scorer(rules=rules_of(settings, rules_file), features=settings.features,
                  models=found, models_note=note)
