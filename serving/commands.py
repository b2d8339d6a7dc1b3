"""Commands of the rules score: `score` and `summary` (`validate-score` is training's).

Each command parses options, shows progress with rich and calls library functions
(`scoring.pipeline`, `serving.events`, `serving.store`); no scoring logic lives here. Heavy
imports stay inside the commands so `healthscore --help` stays fast. `ctx.obj` is the Settings
built in healthscore/cli.py's callback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from features.engine_cli import Data, Engine, Master, open_engine_source
from features.progress import progress_bar
from scoring.cli_support import (
    AsOf,
    RulesFile,
    StoreUrl,
    Warehouse,
    open_warehouse,
    scorer_of,
    settings_of,
)


def register(app: typer.Typer) -> None:
    """Add the rules-score commands to the root app."""
    app.command("score")(score)
    app.command("summary")(summary)


def score(
    ctx: typer.Context,
    as_of: AsOf = None,
    warehouse: Warehouse = None,
    store_url: StoreUrl = None,
    rules_file: RulesFile = None,
    engine: Engine = "duckdb",
    data: Data = None,
    master: Master = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="--engine spark: Parquet folder or URL of the batch table (scores, "
        "probabilities, top factors) [default: paths.batch_scores/as_of=DATE].")] = None,
    store: Annotated[bool, typer.Option(
        "--store/--no-store", help="--engine spark: also write the batch's scores into the "
        "score store (events and alerts as the daily job's).")] = True,
) -> None:
    """The daily job: score every active account and write the scores, events and alerts.

    With no `--as-of` it scores as of the data's today (`features.contract.warehouse.today`),
    so cron needs no date arithmetic; the date used is printed first. `--engine spark` builds
    the features and scores on Spark (scoring/spark_batch.py) into a Parquet batch table, then
    (unless `--no-store`) writes its scores into the store."""
    from datetime import UTC, datetime

    from rich.console import Console

    from features.sources import source_today
    from serving.daily import RunSummary, run_once, score_day
    from serving.events import record_daily
    from serving.store import open_store

    settings = settings_of(ctx)
    scorer = scorer_of(settings, rules_file)
    rules = scorer.rules
    con = open_engine_source(settings, engine, data, warehouse, master)
    console = Console()
    url = store_url or settings.paths.store_url
    portfolio = None
    try:
        when = as_of.date() if as_of else source_today(con)
        console.print(f"as of {when}" + ("" if as_of else " (the warehouse's today)"))
        if engine == "spark":
            scored, churn = _score_on_spark(con, when, scorer, out, settings, console)
            if store and len(scored):
                with open_store(url) as target:
                    record_daily(target.engine, scored, rules, settings.serving, churn=churn)
        else:
            done: dict[str, Any] = {}
            with open_store(url) as history:
                def work() -> RunSummary:
                    with progress_bar(f"score {when}") as report:
                        done["result"] = score_day(con, history, scorer, settings.serving,
                                                   when, progress=report,
                                                   portfolio_cfg=settings.portfolio)
                    return RunSummary(as_of=when, accounts=done["result"].written)

                # The lock and the run log the in-service schedule uses: a cron run and a
                # worker never score at the same moment, and both show in GET /v1/runs.
                ran = run_once(history.engine, datetime.now(UTC).date(), work,
                               clock=lambda: datetime.now(UTC), trigger="manual",
                               once_a_day=False,
                               lease=timedelta(minutes=settings.serving.daily_lock_minutes))
            if ran is None:
                raise typer.Exit(_busy(console))
            scored = done["result"].frame.scores
            portfolio = done["result"].portfolio
            store = True
        written = len(scored)
    finally:
        con.close()

    from rich.table import Table

    table = Table(title=f"Health scores as of {when} ({written} accounts, "
                        f"config {rules.config_version})")
    for col in ("band", "accounts", "share", "mean score", "with flags"):
        table.add_column(col, justify="left" if col == "band" else "right")
    n = max(len(scored), 1)
    bands = [b.name for b in sorted(rules.default.bands, key=lambda b: -b.min)]
    for name in [*bands, None]:
        rows = scored[scored["band"].isna()] if name is None else scored[scored["band"] == name]
        if name is None and rows.empty:
            continue
        with_flags = sum(1 for f in rows["flags"] if f)
        mean = f"{rows['score'].mean():.1f}" if rows["score"].notna().any() else "-"
        table.add_row(name or "no data", str(len(rows)), f"{len(rows) / n:.0%}", mean,
                      str(with_flags))
    console.print(table)
    missing = scored["missing"].explode().dropna().value_counts()
    if len(missing):
        console.print("Missing dimensions: " + ", ".join(f"{d} {c}" for d, c in missing.items()))
    if portfolio is not None:
        console.print(f"Lifecycle: {portfolio.journey_entries} stage changes recorded "
                      f"({portfolio.lifecycle_events} lifecycle.changed events); usage "
                      f"anomalies: {portfolio.anomalies} ({portfolio.anomaly_alerts} new "
                      f"alerts, {portfolio.anomaly_alerts_resolved} resolved)")
    if store:
        console.print(f"Written to {url}")


def _score_on_spark(source: Any, when: Any, scorer: Any, out: str | None, settings: Any,
                    console: Any) -> tuple[Any, dict[str, float]]:
    """The Spark batch (scoring/spark_batch.py), then its table read back as scores."""
    from scoring.batch import scores_from_table
    from scoring.spark_batch import read_batch, score_on_spark

    target = out or f"{str(settings.paths.batch_scores).rstrip('/')}/as_of={when}"
    with progress_bar(f"score {when} on spark") as report:
        batch = score_on_spark(source, when, scorer, target,
                               top_k=settings.health.batch_top_factors, progress=report)
    console.print(f"{batch.accounts} accounts scored on Spark, written to {batch.out}")
    return scores_from_table(read_batch(source, batch.out))


def _busy(console: Any) -> int:
    console.print("another run of the daily scoring holds the lock: nothing done")
    return 3


def summary(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account to summarise.")],
    as_of: AsOf = None,
    warehouse: Warehouse = None,
    store_url: StoreUrl = None,
    rules_file: RulesFile = None,
) -> None:
    """Print one account's health summary (Markdown): score, risk flags, factors, inputs."""
    from features.contract.warehouse import connected_tables
    from scoring.health import health_summary
    from scoring.pipeline import UnknownAccount, score_accounts
    from serving.store import open_store

    settings = settings_of(ctx)
    scorer = scorer_of(settings, rules_file, models=False)
    con = open_warehouse(settings, warehouse)
    with open_store(store_url or settings.paths.store_url) as store:
        try:
            frame = score_accounts(con, [account_id], as_of.date() if as_of else None, scorer,
                                   history=store)
        except UnknownAccount as exc:
            raise typer.BadParameter(str(exc), param_hint="ACCOUNT_ID") from None
    one = frame.account(account_id)
    if one.status == "not-started":
        raise typer.BadParameter(f"account {account_id!r} was not yet a customer on "
                                 f"{frame.as_of}", param_hint="--as-of")
    text = health_summary(one.score, one.features.iloc[0], connected_tables(con), scorer.rules,
                          name=one.name or account_id)
    con.close()
    typer.echo(text, nl=False)

