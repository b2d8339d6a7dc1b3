"""Commands of the rules score: `score`, `summary` and `validate-score`.

Each command parses options, shows progress with rich and calls library functions
(`scoring.batch`, `serving.store`, `training.score_validation`); no scoring logic lives
here. Heavy imports stay inside the commands so `healthscore --help` stays fast. `ctx.obj` is the
Settings built in healthscore/cli.py's callback.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer

from features.progress import progress_bar
from scoring.cli_support import (
    AsOf,
    RulesFile,
    StoreUrl,
    Warehouse,
    open_warehouse,
    rules_of,
    settings_of,
)


def register(app: typer.Typer) -> None:
    """Add the rules-score commands to the root app."""
    app.command("score")(score)
    app.command("summary")(summary)


def score(
    ctx: typer.Context,
    as_of: AsOf,
    warehouse: Warehouse = None,
    store_url: StoreUrl = None,
    rules_file: RulesFile = None,
) -> None:
    """Score every active account as of a date and write the scores to the store."""
    from rich.console import Console
    from rich.table import Table

    from scoring.batch import score_accounts
    from serving.store import open_store

    settings = settings_of(ctx)
    rules = rules_of(settings, rules_file)
    con = open_warehouse(settings, warehouse)
    console = Console()
    with open_store(store_url or settings.paths.store_url) as store:
        with progress_bar(f"score {as_of.date()}") as report:
            scored, _ = score_accounts(con, as_of.date(), rules, settings.features, store=store,
                                       progress=report)
            report("writing", 0.0)
            # Through the service's outbox: the daily job fires the same events and alerts as
            # the API, in the same transaction as the scores, and a re-run adds none twice.
            from serving.events import record_daily

            if len(scored):
                record_daily(store.engine, scored, rules, settings.serving)
            written = len(scored)
            report("writing", 1.0)
    con.close()

    table = Table(title=f"Health scores as of {as_of.date()} ({written} accounts, "
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
    console.print(f"Written to {store_url or settings.paths.store_url}")


def summary(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account to summarise.")],
    as_of: Annotated[datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="As-of date [default: the account's latest stored score, else the end of the "
        "data (today for live data)].")] = None,
    warehouse: Warehouse = None,
    store_url: StoreUrl = None,
    rules_file: RulesFile = None,
) -> None:
    """Print one account's health summary (Markdown): score, risk flags, factors, inputs."""
    from features.contract.warehouse import connected_tables, today
    from scoring.batch import score_accounts
    from scoring.health import health_summary
    from serving.store import open_store

    settings = settings_of(ctx)
    rules = rules_of(settings, rules_file)
    con = open_warehouse(settings, warehouse)
    found = con.execute("select name from accounts where account_id = ?",
                        [account_id]).fetchone()
    if found is None:
        raise typer.BadParameter(f"no account {account_id!r} in the warehouse",
                                 param_hint="ACCOUNT_ID")
    with open_store(store_url or settings.paths.store_url) as store:
        when: date = as_of.date() if as_of else (store.latest_date(account_id)
                                                 or today(con))
        scored, feats = score_accounts(con, when, rules, settings.features,
                                       account_ids=[account_id], store=store,
                                       include_inactive=True)
    text = health_summary(scored.iloc[0], feats.iloc[0], connected_tables(con), rules,
                          name=found[0] or account_id)
    con.close()
    typer.echo(text, nl=False)
