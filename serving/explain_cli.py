"""The `explain` command: one account's health summary extended with the models' view.

`healthscore explain ACCOUNT_ID [--as-of DATE] [--format markdown|json]` prints the rules health
summary (scoring/health/summary.py) followed by the model sections (serving/explain_markdown.py),
or the HealthAnalysis as JSON. It parses options, shows progress on stderr (so JSON on stdout
stays clean) and calls library functions: no scoring or explanation logic lives here. Heavy
imports stay inside the command so `healthscore --help` stays fast. Registered on the root app
by `register(app)`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

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


class OutputFormat(StrEnum):
    markdown = "markdown"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add the `explain` command to the root app."""
    app.command("explain")(explain)


def explain(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account to explain.")],
    as_of: AsOf = None,
    output: Annotated[OutputFormat, typer.Option(
        "--format", case_sensitive=False, help="markdown or json.")] = OutputFormat.markdown,
    warehouse: Warehouse = None,
    store_url: StoreUrl = None,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Model bundles [default: paths.models_dir].")] = None,
    rules_file: RulesFile = None,
) -> None:
    """Explain one account: health summary, churn and expansion probabilities with their
    factors, what would help, peers, and whether the rules and the model agree."""
    from rich.console import Console

    from features.contract.warehouse import connected_tables
    from scoring.health import health_summary
    from scoring.pipeline import NOT_STARTED, UnknownAccount, score_accounts
    from serving.explain import explain_account
    from serving.explain_markdown import analysis_markdown
    from serving.peers import load_peer_table
    from serving.store import open_store

    settings = settings_of(ctx)
    if models_dir is not None:
        settings = settings.model_copy(update={"paths": settings.paths.model_copy(
            update={"models_dir": models_dir})})
    scorer = scorer_of(settings, rules_file)
    rules = scorer.rules
    con = open_warehouse(settings, warehouse)
    console = Console(stderr=True)
    try:
        with console.status("Scoring the account"), \
                open_store(store_url or settings.paths.store_url) as store:
            try:
                frame = score_accounts(con, [account_id], as_of.date() if as_of else None,
                                       scorer, history=store)
            except UnknownAccount as exc:
                raise typer.BadParameter(str(exc), param_hint="ACCOUNT_ID") from None
        one = frame.account(account_id)
        if one.status == NOT_STARTED:
            raise typer.BadParameter(f"account {account_id!r} was not yet a customer on "
                                     f"{frame.as_of}", param_hint="--as-of")
        with progress_bar(f"peers as of {frame.as_of}", console=console,
                          transient=True) as report:
            peers = load_peer_table(con, frame.as_of, scorer, progress=report)
        connected = connected_tables(con)
        analysis = explain_account(one, rules, scorer.models, peers=peers, cfg=settings.serving)
        if output is OutputFormat.json:
            typer.echo(analysis.model_dump_json(indent=2))
            return
        summary = health_summary(one.score, one.features.iloc[0], connected, rules,
                                 name=one.name or account_id, top=settings.serving.top_k_factors)
        typer.echo(summary + "\n" + analysis_markdown(analysis), nl=False)
    finally:
        con.close()
