"""The `explain` command: one account's health summary extended with the models' view.

`healthscore explain ACCOUNT_ID [--as-of DATE] [--format markdown|json]` prints the rules health
summary (scoring/health/summary.py) followed by the model sections (serving/explain_markdown.py),
or the HealthAnalysis as JSON. It parses options, shows progress on stderr (so JSON on stdout
stays clean) and calls library functions: no scoring or explanation logic lives here. Heavy
imports stay inside the command so `healthscore --help` stays fast. Registered on the root app
by `register(app)`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from features.progress import progress_bar
from scoring.cli_support import settings_of


class OutputFormat(StrEnum):
    markdown = "markdown"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add the `explain` command to the root app."""
    app.command("explain")(explain)


def _bundles(models_dir: Path) -> Any:
    """The champion bundles, or None when none is trained yet (the rules still explain)."""
    from scoring.bundle import BundleMismatchError, load_bundles

    try:
        return load_bundles(models_dir)
    except FileNotFoundError:
        return None
    except BundleMismatchError as exc:
        raise typer.BadParameter(str(exc), param_hint="--models-dir") from None


def explain(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account to explain.")],
    as_of: Annotated[datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="As-of date [default: the account's latest stored score, else today].")] = None,
    output: Annotated[OutputFormat, typer.Option(
        "--format", case_sensitive=False, help="markdown or json.")] = OutputFormat.markdown,
    warehouse: Annotated[Path | None, typer.Option(
        "--warehouse", help="DuckDB warehouse [default: paths.warehouse].")] = None,
    store_url: Annotated[str | None, typer.Option(
        "--store-url", help="Score store for the trend [default: paths.store_url].")] = None,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Model bundles [default: paths.models_dir].")] = None,
    rules_file: Annotated[Path | None, typer.Option(
        "--rules", help="Rules YAML [default: health.rules_file or the packaged rules].")] = None,
) -> None:
    """Explain one account: health summary, churn and expansion probabilities with their
    factors, what would help, peers, and whether the rules and the model agree."""
    from rich.console import Console

    from features.contract.warehouse import connect, connected_tables
    from scoring.batch import score_accounts
    from scoring.health import RulesError, health_summary, load_rules_for
    from serving.explain import AnalysisError, account_name, analyze_features
    from serving.explain_markdown import analysis_markdown
    from serving.peers import load_peer_table
    from serving.store import open_store

    settings = settings_of(ctx)
    health = settings.health if rules_file is None else \
        settings.health.model_copy(update={"rules_file": rules_file})
    try:
        rules = load_rules_for(health)
    except RulesError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rules") from None
    try:
        con = connect(warehouse or settings.paths.warehouse, read_only=True)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--warehouse") from None
    console = Console(stderr=True)
    try:
        with console.status("Scoring the account"), \
                open_store(store_url or settings.paths.store_url) as store:
            when: date = as_of.date() if as_of else (store.latest_date(account_id)
                                                    or date.today())
            try:
                name = account_name(con, account_id, when)
            except AnalysisError as exc:
                raise typer.BadParameter(str(exc), param_hint="ACCOUNT_ID") from None
            scored, feats = score_accounts(con, when, rules, settings.features,
                                           account_ids=[account_id], store=store,
                                           include_inactive=True)
        bundles = _bundles(models_dir or settings.paths.models_dir)
        with progress_bar(f"peers as of {when}", console=console, transient=True) as report:
            peers = load_peer_table(con, when, rules, bundles, settings.features,
                                    progress=report)
        connected = connected_tables(con)
        analysis = analyze_features(feats.iloc[[0]], connected, rules, bundles, peers=peers,
                                    cfg=settings.serving, scored=scored.iloc[0], name=name)
        if output is OutputFormat.json:
            typer.echo(analysis.model_dump_json(indent=2))
            return
        summary = health_summary(scored.iloc[0], feats.iloc[0], connected, rules,
                                 name=name or account_id, top=settings.serving.top_k_factors)
        typer.echo(summary + "\n" + analysis_markdown(analysis), nl=False)
    finally:
        con.close()
