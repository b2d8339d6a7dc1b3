"""The `validate-score` command: is the rules score any good against the churn that followed?

Option parsing and tables only; the measurement is `training.score_validation`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from features.progress import progress_bar
from scoring.cli_support import RulesFile, Warehouse, open_warehouse, rules_of, settings_of


def register(app: typer.Typer) -> None:
    """Add `validate-score` to the root app."""
    app.command("validate-score")(validate_score)


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

    settings = settings_of(ctx)
    rules = rules_of(settings, rules_file)
    con = open_warehouse(settings, warehouse)
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

    for dim, why in result.left_out.items():
        console.print(f"Left out of the suggested weights: {dim} ({why}).")
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
