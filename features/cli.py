"""Commands of the features package: generate, ingest, features.

Each command parses options, shows progress with rich and calls one library function; no logic
lives here. Heavy imports stay inside the commands so `healthscore --help` is fast.
"""

from __future__ import annotations

import typer

from features.engine_cli import Data, Engine, Master, open_engine_source


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
    app.command("generate")(generate)
    app.command("ingest")(ingest)
    app.command("features")(features)


# --- generate: features/synth/generate.py ---------------------------------------------------------
_GEN_ACCOUNTS = typer.Option(1000, "--accounts", min=1, help="Number of accounts (some sign "
                             "up during the period).")
_GEN_START = typer.Option("2024-01-01", "--start", help="First day of the data (YYYY-MM-DD).")
_GEN_DAYS = typer.Option(730, "--days", min=1, help="Days of data from --start.")
_GEN_SEED = typer.Option(7, "--seed", help="Random seed: the same seed writes the same bytes.")
_GEN_OUT = typer.Option("data/raw", "--out", help="Folder to write one file per table into.")
_GEN_ANOMALIES = typer.Option(0.0, "--anomalies", min=0.0, help="Inject labelled usage "
                              "anomalies, this many per account and year (written to "
                              "truth_anomalies.csv); 0, the default, injects none.")
_GEN_FORMAT = typer.Option("parquet", "--format", help="File format of the tables: parquet or "
                           "csv (the truth is always truth.parquet and truth_events.csv).")
_GEN_EVENT_TYPES = typer.Option(None, "--event-types", help="Customer event types of known "
                                "churn effect to add: 'example' (two raising churn, one "
                                "lowering it, two noise) or a YAML file listing name, "
                                "churn_effect and optionally rate, spread, timescale.")
_GEN_BILLING = typer.Option("mixed", "--billing", help="Contract terms: mixed (each segment's "
                            "own), monthly (every account) or annual (no monthly plan).")
_GEN_EVENTS_ONLY = typer.Option(False, "--events-only", help="Leave out tickets, surveys and "
                                "touchpoints: product events, billing and outcomes only.")


def generate(
    accounts: int = _GEN_ACCOUNTS,
    start: str = _GEN_START,
    days: int = _GEN_DAYS,
    seed: int = _GEN_SEED,
    out: str = _GEN_OUT,
    fmt: str = _GEN_FORMAT,
    event_types: str | None = _GEN_EVENT_TYPES,
    billing: str = _GEN_BILLING,
    events_only: bool = _GEN_EVENTS_ONLY,
    anomalies: float = _GEN_ANOMALIES,
) -> None:
    """Generate a synthetic B2B SaaS world in the contract format."""
    from datetime import date
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from features.synth.anomalies import AnomalyInjection
    from features.synth.event_type_file import EventTypeFileError, load_event_types
    from features.synth.generate import FORMATS, generate_world, write_world
    from features.synth.params import BILLING

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise typer.BadParameter(f"{start!r} is not a date (YYYY-MM-DD)",
                                 param_hint="--start") from None
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: use one of {', '.join(FORMATS)}",
                                 param_hint="--format")
    if billing not in BILLING:
        raise typer.BadParameter(f"{billing!r}: use one of {', '.join(BILLING)}",
                                 param_hint="--billing")
    try:
        declared = load_event_types(event_types) if event_types else ()
    except EventTypeFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--event-types") from None
    console = Console()
    folder = Path(out)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("generate", total=1.0)
        world = generate_world(
            accounts, first, days, seed,
            progress=lambda stage, done: bar.update(task, completed=done,
                                                    description=f"generate: {stage}"),
            event_types=declared, billing=billing, events_only=events_only,
            anomalies=AnomalyInjection(per_account_year=anomalies) if anomalies > 0 else None,
        )
        task = bar.add_task("write", total=1.0)
        paths = write_world(
            world, folder, fmt,
            progress=lambda name, done: bar.update(task, completed=done,
                                                   description=f"write: {name}"),
        )
    table = Table(title=f"{accounts} accounts x {days} days from {first}, seed {seed}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("file")
    frames = {**world.tables, "truth": world.truth, "truth_events": world.shocks}
    if world.anomalies is not None:
        frames["truth_anomalies"] = world.anomalies
    for name, path in paths.items():
        table.add_row(name, f"{len(frames[name]):,}", str(path))
    console.print(table)
    if declared:
        console.print("event types: " + ", ".join(
            f"{t.name} (churn effect {t.churn_effect:+g})" for t in declared))


# --- ingest: features/contract/ingest.py ----------------------------------------------------------
_INGEST_JSON = typer.Option(False, "--json", help="Print the report as one JSON document on "
                            "stdout and nothing else there (progress goes to stderr).")


def ingest(
    ctx: typer.Context,
    data_dir: str = typer.Argument(..., help="Folder with one file per table: <table>.csv or "
                                   "<table>.parquet (or a customer export, with --mapping)."),
    mapping: str | None = typer.Option(None, "--mapping", help="YAML column mapping of a "
                                       "customer export, e.g. "
                                       "features/contract/mappings/ravenstack.yaml."),
    warehouse: str | None = typer.Option(None, "--warehouse", help="DuckDB warehouse file; "
                                         "default: paths.warehouse of the config."),
    as_json: bool = _INGEST_JSON,
) -> None:
    """Validate a data folder and load it into the DuckDB warehouse in one transaction.

    Every problem also goes to <warehouse stem>.problems.csv beside the warehouse (removed when
    there are none). Exit code 1 when the load is refused.
    """
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from features.contract.ingest import (
        STEPS,
        IngestRefused,
        IngestReport,
        WarehouseWriteError,
        ingest_folder,
    )
    from features.contract.mapping import MappingError
    from features.contract.report import error_document, print_report, report_document, to_json

    settings = ctx.obj
    console = Console()
    # With --json stdout carries the document alone; off a terminal a bar is only noise.
    progress_console = Console(stderr=True) if as_json else console

    def show(report: IngestReport) -> None:
        if as_json:
            typer.echo(to_json(report_document(report)))
        else:
            print_report(report, console)

    target = Path(warehouse) if warehouse else settings.paths.warehouse
    try:
        with Progress(TextColumn("{task.description:<32}"), BarColumn(), TimeElapsedColumn(),
                      console=progress_console, transient=True,
                      disable=not progress_console.is_terminal) as bar:
            tasks: dict[str, TaskID] = {}

            def tick(table: str, step: str) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=len(STEPS))
                bar.update(tasks[table], completed=STEPS.index(step) + 1,
                           description=f"{table}: {step}")

            report = ingest_folder(Path(data_dir), target, settings.ingest, mapping=mapping,
                                   progress=tick)
    except IngestRefused as exc:
        show(exc.report)
        raise typer.Exit(1) from None
    except (MappingError, FileNotFoundError, WarehouseWriteError) as exc:
        if as_json:
            typer.echo(to_json(error_document(str(exc))))
        else:
            console.print(str(exc), style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    show(report)


# --- features: features/build.py ------------------------------------------------------------------
_AS_OF = typer.Option(None, "--as-of", help="As-of date (YYYY-MM-DD): features see only data "
                      "dated before its midnight [default: the warehouse's today].")
_OUT = typer.Option(None, "--out", help="Write the frame to FILE.parquet or FILE.csv.")
_ACCOUNT = typer.Option(None, "--account", help="Only this account (repeatable); default: every "
                        "active account.")
_WAREHOUSE = typer.Option(None, "--warehouse", help="DuckDB warehouse file; default: "
                          "paths.warehouse of the config.")


def features(
    ctx: typer.Context,
    as_of: str | None = _AS_OF,
    out: str | None = _OUT,
    account: list[str] | None = _ACCOUNT,
    warehouse: str | None = _WAREHOUSE,
    engine: Engine = "duckdb",
    data: Data = None,
    master: Master = None,
) -> None:
    """Build point-in-time features for the active accounts as of a date."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from features.build import build_features, write_features
    from features.entities import build_entities
    from features.feature_summary import summary_table
    from features.sources import source_catalog, source_today

    settings = ctx.obj
    console = Console()
    target = Path(out) if out else None
    if target is not None and target.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter(f"{target}: use a .parquet or .csv file", param_hint="--out")
    con = open_engine_source(settings, engine, data, Path(warehouse) if warehouse else None,
                             master)
    try:
        connected, catalog = source_catalog(con)
        try:
            if as_of is None:
                as_of = str(source_today(con))
                console.print(f"as of {as_of} (the warehouse's today)")
            entities = build_entities(catalog, as_of, account_ids=account or None)
        except (FileNotFoundError, ValueError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        if entities.empty:
            who = f"account(s) {', '.join(account)} not active" if account else \
                "no active account"
            console.print(f"[yellow]{who} as of {as_of} (unknown, not yet created or "
                          "churned)[/yellow]")
            raise typer.Exit(1)
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("features", total=1.0)
            frame = build_features(
                con, entities, settings.features,
                progress=lambda step, done: bar.update(task, completed=done,
                                                       description=f"features: {step}"),
            )
    finally:
        con.close()
    console.print(summary_table(frame, connected, as_of, settings.features.attribute_prefix))
    if target is not None:
        write_features(frame, target)
        console.print(f"wrote {len(frame)} rows x {frame.shape[1]} columns to {target}")
    else:
        console.print("no --out given: nothing written")
