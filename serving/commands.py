"""Commands of the rules score: `score`, `summary` and `validate-score`.

Each command parses options, shows progress with rich and calls library functions
(`serving.health.batch`, `serving.store`, `training.score_validation`); no scoring logic lives
here. Heavy imports stay inside the commands so `healthscore --help` stays fast. `ctx.obj` is the
Settings built in serving/cli.py's callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

AsOf = Annotated[datetime, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                        help="As-of date (YYYY-MM-DD).")]
Warehouse = Annotated[Path | None, typer.Option(
    "--warehouse", help="DuckDB warehouse [default: paths.warehouse].")]
StoreUrl = Annotated[str | None, typer.Option(
    "--store-url", help="SQLAlchemy URL of the score store [default: paths.store_url].")]
RulesFile = Annotated[Path | None, typer.Option(
    "--rules", help="Rules YAML [default: health.rules_file or the packaged rules].")]


def register(app: typer.Typer) -> None:
    """Add the rules-score commands to the root app."""
    app.command("score")(score)
    app.command("summary")(summary)
    app.command("validate-score")(validate_score)


def _settings(ctx: typer.Context) -> Any:
    if ctx.obj is None:
        from features.config import load_settings

        ctx.obj = load_settings()
    return ctx.obj


def _rules(settings: Any, rules_file: Path | None) -> Any:
    from serving.health import RulesError, load_rules_for

    health = settings.health
    if rules_file is not None:
        health = health.model_copy(update={"rules_file": rules_file})
    try:
        return load_rules_for(health)
    except RulesError as exc:
        raise typer.BadParameter(str(exc), param_hint="rules") from None


def _open_warehouse(settings: Any, warehouse: Path | None) -> Any:
    from features.warehouse import connect

    path = warehouse or settings.paths.warehouse
    try:
        return connect(path, read_only=True)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--warehouse") from None


@contextmanager
def progress_bar(description: str, *, console: Any = None, transient: bool = False
                 ) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar fed by (step, fraction done) callbacks, one line per step."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def report(step: str, done: float) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(f"{description}: {step}", total=1.0)
            bar.update(tasks[step], completed=min(1.0, max(0.0, done)))

        yield report


def _data_today(con: Any) -> date:
    """The as-of date of 'now' for this warehouse: the day after its latest row, or today when
    the data runs up to today (a historical or demo warehouse is not scored in its future)."""
    from features.labels import data_end

    try:
        end = data_end(con).date()
    except ValueError:
        return date.today()
    return min(end, date.today())


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

    from serving.health.batch import score_accounts
    from serving.store import open_store

    settings = _settings(ctx)
    rules = _rules(settings, rules_file)
    con = _open_warehouse(settings, warehouse)
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
    from features.warehouse import connected_tables
    from serving.health import health_summary
    from serving.health.batch import score_accounts
    from serving.store import open_store

    settings = _settings(ctx)
    rules = _rules(settings, rules_file)
    con = _open_warehouse(settings, warehouse)
    found = con.execute("select name from accounts where account_id = ?",
                        [account_id]).fetchone()
    if found is None:
        raise typer.BadParameter(f"no account {account_id!r} in the warehouse",
                                 param_hint="ACCOUNT_ID")
    with open_store(store_url or settings.paths.store_url) as store:
        when: date = as_of.date() if as_of else (store.latest_date(account_id)
                                                 or _data_today(con))
        scored, feats = score_accounts(con, when, rules, settings.features,
                                       account_ids=[account_id], store=store,
                                       include_inactive=True)
    text = health_summary(scored.iloc[0], feats.iloc[0], connected_tables(con), rules,
                          name=found[0] or account_id)
    con.close()
    typer.echo(text, nl=False)


def validate_score(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    start: Annotated[datetime | None, typer.Option(
        "--start", formats=["%Y-%m-%d"], help="First as-of date [default: data start + warm-up]."
    )] = None,
    end: Annotated[datetime | None, typer.Option(
        "--end", formats=["%Y-%m-%d"],
        help="Last as-of date [default: the last date the shortest horizon is observable]."
    )] = None,
    warehouse: Warehouse = None,
    rules_file: RulesFile = None,
) -> None:
    """Measure the rules score against churn on historical monthly as-of dates."""
    from training.score_validation import validate_score as run
    from training.score_validation import validation_dates

    settings = _settings(ctx)
    rules = _rules(settings, rules_file)
    con = _open_warehouse(settings, warehouse)
    horizons = tuple(settings.training.horizons)
    dates = validation_dates(con, settings.training.as_of_frequency,
                             settings.health.validation_warmup_days, min(horizons),
                             start=start, end=end)
    if as_json:
        result = run(con, rules, settings.features, dates=dates, horizons=horizons,
                     fit_share=settings.health.weights_fit_share)
    else:
        with progress_bar("validate-score") as report:
            result = run(con, rules, settings.features, dates=dates, horizons=horizons,
                         fit_share=settings.health.weights_fit_share, progress=report)
    con.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_validation(result)


def _fmt(v: float, spec: str = ".3f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def _print_validation(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    hs = result.horizons
    auc = Table(title=f"Rules score vs churn: {result.rows} account-snapshots on "
                      f"{len(result.dates)} as-of dates ({result.dates[0]} .. {result.dates[-1]}),"
                      f" config {result.config_version}")
    auc.add_column("score")
    auc.add_column("coverage", justify="right")
    for h in hs:
        auc.add_column(f"AUC {h}d", justify="right")
    auc.add_row("composite", "100%", *[_fmt(result.auc["composite"][h]) for h in hs])
    for dim, cov in result.coverage.items():
        auc.add_row(dim, f"{cov:.0%}", *[_fmt(result.auc[dim][h]) for h in hs])
    auc.add_row("churn rate", "", *[_fmt(result.churn_rate[h], ".1%") for h in hs])
    auc.add_row("top-decile lift", "", *[_fmt(result.lift[h], ".2f") for h in hs])
    console.print(auc)

    bands = Table(title="Churn rate per band")
    bands.add_column("band")
    bands.add_column("snapshots", justify="right")
    bands.add_column("mean score", justify="right")
    for h in hs:
        bands.add_column(f"churned within {h}d", justify="right")
    for b in result.bands:
        bands.add_row(b["band"], str(b["rows"]), _fmt(b["mean_score"], ".1f"),
                      *[_fmt(b[f"churn_{h}d"], ".1%") for h in hs])
    console.print(bands)
    for b in result.bands:
        console.print(f"{b['band']}: {_fmt(b[f'churn_{hs[-1]}d'], '.0%')} churned within "
                      f"{hs[-1]} days")

    s = result.suggested
    if s is None:
        console.print("No suggested weights: too few as-of dates or outcomes to fit them.")
        return
    weights = Table(title=f"Suggested weights (fitted to churn within {s.horizon}d on "
                          f"{s.fit_dates[0]} .. {s.fit_dates[-1]}; evaluated on "
                          f"{s.eval_dates[0]} .. {s.eval_dates[-1]}, {s.eval_rows} snapshots)")
    weights.add_column("dimension")
    weights.add_column("current %", justify="right")
    weights.add_column("suggested %", justify="right")
    for dim, w in s.weights.items():
        weights.add_row(dim, _fmt(s.current.get(dim, 0.0), ".1f"), _fmt(w, ".1f"))
    weights.add_row("AUC (later window)", _fmt(s.auc_current), _fmt(s.auc_suggested))
    console.print(weights)
    console.print(f"AUC gain of the suggested weights on the later window: {s.gain:+.3f}")
