"""Commands of portfolio intelligence: `portfolio value|rfm|lifecycle` and `anomalies`.

Each scores the active portfolio through the one pipeline (`scoring.pipeline.score_accounts`)
and prints what `scoring.portfolio` / `scoring.anomalies` derive from it, as a table or with
`--json` as one JSON document on stdout (progress goes to stderr). `portfolio lifecycle
--account ID` adds the account's recorded journey from the store; `anomalies --stored` lists
what the daily job recorded instead of judging the window now.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

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

portfolio_app = typer.Typer(help="Portfolio views: value tiers and classes, RFM, lifecycle.",
                            no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
Limit = Annotated[int, typer.Option("--limit", min=1, help="Rows to print.")]


def register(app: typer.Typer) -> None:
    app.add_typer(portfolio_app, name="portfolio")
    app.command("anomalies")(anomalies)


def _active(ctx: typer.Context, as_of: Any, warehouse: Any, rules_file: Any) -> Any:
    from rich.console import Console

    from scoring.pipeline import score_accounts

    settings = settings_of(ctx)
    scorer = scorer_of(settings, rules_file)
    con = open_warehouse(settings, warehouse)
    with progress_bar("portfolio", console=Console(stderr=True), transient=True) as report:
        frame = score_accounts(con, None, as_of.date() if as_of else None, scorer,
                               progress=report)
    return settings, con, frame.active()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _emit(rows: Any, as_of: Any, json_out: bool, title: str, columns: list[str],
          limit: int) -> None:
    records = [{k: _jsonable(v) for k, v in r.items()} for r in rows.to_dict("records")]
    if json_out:
        typer.echo(json.dumps({"asOf": str(as_of), "total": len(records), "items": records},
                              default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} as of {as_of} ({len(records)} active accounts)")
    for col in columns:
        table.add_column(col)
    for r in records[:limit]:
        table.add_row(*["" if r[c] is None else (f"{r[c]:.2f}" if isinstance(r[c], float)
                                                 else str(r[c])) for c in columns])
    Console().print(table)


@portfolio_app.command("value")
def value(ctx: typer.Context, as_of: AsOf = None, warehouse: Warehouse = None,
          rules_file: RulesFile = None, json_out: Json = False, limit: Limit = 20) -> None:
    """Value score, tier (Strategic / High Value / Standard) and health-segment class of every
    active account, highest value first, each with its reason."""
    from scoring.portfolio.value import value_scores

    settings, con, frame = _active(ctx, as_of, warehouse, rules_file)
    con.close()
    rows = value_scores(frame, settings.portfolio).sort_values(
        "value_score", ascending=False, na_position="last", kind="stable")
    _emit(rows, frame.as_of, json_out, "Customer value",
          ["account_id", "value_score", "tier", "segment", "tier_reason"], limit)


@portfolio_app.command("rfm")
def rfm(ctx: typer.Context, as_of: AsOf = None, warehouse: Warehouse = None,
        rules_file: RulesFile = None, json_out: Json = False, limit: Limit = 20) -> None:
    """Recency, frequency and monetary scores (1-5, portfolio quintiles) and RFM segments."""
    from scoring.portfolio.rfm import rfm_scores

    settings, con, frame = _active(ctx, as_of, warehouse, rules_file)
    con.close()
    rows = rfm_scores(frame, settings.portfolio.rfm).sort_values(
        ["rfm", "account_id"], ascending=[False, True], kind="stable")
    _emit(rows, frame.as_of, json_out, "RFM",
          ["account_id", "rfm", "segment", "recency_days", "frequency_30d", "monetary"], limit)


@portfolio_app.command("lifecycle")
def lifecycle(ctx: typer.Context, as_of: AsOf = None, warehouse: Warehouse = None,
              rules_file: RulesFile = None, store_url: StoreUrl = None,
              account: Annotated[str | None, typer.Option(
                  "--account", help="Print this account's stage and recorded journey.")] = None,
              json_out: Json = False, limit: Limit = 20) -> None:
    """Lifecycle stage (Onboarding, Growth, Mature, At-Risk, Renewal) of every active account
    with its cause; with --account, that account's journey as the daily job recorded it."""
    from scoring.portfolio.lifecycle import lifecycle_stages

    settings, con, frame = _active(ctx, as_of, warehouse, rules_file)
    con.close()
    rows = lifecycle_stages(frame, settings.portfolio.lifecycle)
    if account is None:
        _emit(rows, frame.as_of, json_out, "Lifecycle stages",
              ["account_id", "stage", "cause"], limit)
        return
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from serving.portfolio_store import JourneyEntry
    from serving.store import open_store

    with open_store(store_url or settings.paths.store_url) as store, \
            Session(store.engine) as session:
        entries = [{"asOf": str(e.as_of), "from": e.from_stage, "to": e.stage,
                    "cause": e.cause} for e in session.scalars(
            select(JourneyEntry).where(JourneyEntry.account_id == account)
            .order_by(JourneyEntry.as_of))]
    mine = rows[rows["account_id"] == account]
    current = None if mine.empty else {k: _jsonable(v) for k, v in
                                       mine.iloc[0].to_dict().items()}
    if json_out:
        typer.echo(json.dumps({"accountId": account, "asOf": str(frame.as_of),
                               "current": current, "journey": entries}, default=str))
        return
    typer.echo(f"{account} as of {frame.as_of}: " + (
        f"{current['stage']} ({current['cause']})" if current else "not an active customer"))
    for e in entries:
        typer.echo(f"  {e['asOf']}: {e['from'] or '(start)'} -> {e['to']}: {e['cause']}")
    if not entries:
        typer.echo("  no recorded journey (the daily `healthscore score` job records it)")


def anomalies(ctx: typer.Context, as_of: AsOf = None, warehouse: Warehouse = None,
              store_url: StoreUrl = None,
              stored: Annotated[bool, typer.Option(
                  "--stored", help="List the anomalies the daily job recorded.")] = False,
              json_out: Json = False, limit: Limit = 20) -> None:
    """Usage anomalies: each active account's last window of daily usage judged against its own
    weekday pattern (or, with --stored, what the daily job recorded), with the evidence."""
    import pandas as pd

    from features.contract.warehouse import today
    from scoring.anomalies import detect_anomalies

    settings = settings_of(ctx)
    if stored:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from serving.portfolio_store import UsageAnomaly
        from serving.store import open_store

        with open_store(store_url or settings.paths.store_url) as store, \
                Session(store.engine) as session:
            stmt = select(UsageAnomaly).order_by(UsageAnomaly.as_of.desc(), UsageAnomaly.id)
            if as_of:
                stmt = stmt.where(UsageAnomaly.as_of == as_of.date())
            found = pd.DataFrame([{
                "account_id": a.account_id, "metric": a.metric, "as_of": str(a.as_of),
                "window_start": str(a.window_start), "window_end": str(a.window_end),
                "expected": a.expected, "observed": a.observed, "change": a.change, "z": a.z,
                "direction": a.direction, "alert_id": a.alert_id}
                for a in session.scalars(stmt)],
                columns=["account_id", "metric", "as_of", "window_start", "window_end",
                         "expected", "observed", "change", "z", "direction", "alert_id"])
        when = as_of.date() if as_of else "every date"
    else:
        # Every account: one churned (or not yet signed up) during the window has days outside
        # its customer life there and is not judged.
        con = open_warehouse(settings, warehouse)
        when = as_of.date() if as_of else today(con)
        found = detect_anomalies(con, when, settings.portfolio.anomalies)
        con.close()
    _emit(found, when, json_out, "Usage anomalies",
          ["account_id", "metric", "window_start", "window_end", "expected", "observed",
           "change", "z", "direction"], limit)
