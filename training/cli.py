"""The `train` command: option parsing, progress bars and the metrics table; nothing else.

`healthscore train` trains the churn and expansion models from the warehouse
(training.pipeline); `healthscore train --table FILE --label COL ...` trains one model on a flat
file (training.table). Both print one row per model and scorer; `--json` prints the same rows
(and the promotions and warnings) as JSON on stdout, with progress on stderr.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import typer

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
    app.command("train")(train)


_DROP = typer.Option(None, "--drop", help="--table: column to leave out (repeatable).")
_HEADERS = {"positives": "pos", "roc_auc": "AUC", "pr_auc": "PR AUC", "top_decile_lift": "lift10",
            "recall_at_10pct": "rec10", "brier": "Brier", "ece": "ECE"}
_COLUMNS = ("rows", "positives", "roc_auc", "pr_auc", "top_decile_lift", "recall_at_10pct",
            "brier", "ece")


def train(
    ctx: typer.Context,
    as_of_start: str | None = typer.Option(
        None, "--as-of-start", help="First training as-of date (YYYY-MM-DD); default: the data "
        "start plus the longest feature window."),
    as_of_end: str | None = typer.Option(
        None, "--as-of-end", help="Last training as-of date; default: the last date the "
        "shortest horizon can label."),
    warehouse: str | None = typer.Option(
        None, "--warehouse", help="DuckDB warehouse; default: paths.warehouse of the config."),
    truth: str | None = typer.Option(
        None, "--truth", help="Generator ground truth (truth.parquet) for the oracle baseline; "
        "default: truth.parquet in paths.data_dir when present."),
    table: str | None = typer.Option(
        None, "--table", help="Bring your own table: a CSV or Parquet file, one row per "
        "example."),
    label: str | None = typer.Option(None, "--label", help="--table: the 0/1 label column."),
    id_column: str | None = typer.Option(None, "--id", help="--table: identifier column (not a "
                                         "feature)."),
    time_column: str | None = typer.Option(
        None, "--time", help="--table: time column; given, the split is chronological, else "
        "stratified cross-validation."),
    drop: list[str] | None = _DROP,
    name: str | None = typer.Option(None, "--name", help="--table: registered model name; "
                                    "default healthscore-table-<label>."),
    seed: int | None = typer.Option(None, "--seed", help="Override training.seed."),
    no_register: bool = typer.Option(False, "--no-register", help="Skip MLflow (no run, no "
                                     "registry); bundles are still saved."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Train, backtest, evaluate against the baselines and register the models."""
    from pathlib import Path

    from rich.console import Console

    settings = ctx.obj
    if seed is not None:
        settings = settings.model_copy(
            update={"training": settings.training.model_copy(update={"seed": seed})})
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)  # piped output: do not squeeze the table to 80 columns
    err = Console(stderr=True)
    if table is None and (label or id_column or time_column or drop or name):
        raise typer.BadParameter("--label/--id/--time/--drop/--name need --table",
                                 param_hint="--table")
    with _progress(err) as tick:
        if table is not None:
            from training.table import TableError, TableSpec, train_table

            if not label:
                raise typer.BadParameter("--table needs --label", param_hint="--label")
            spec = TableSpec(Path(table), label, id_column, time_column, tuple(drop or ()),
                             name)
            try:
                job = train_table(settings, spec, register=not no_register, progress=tick)
            except TableError as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
        else:
            from training.pipeline import load_truth, run_training_job
            from training.splits import NotEnoughHistoryError

            try:
                truth_frame = load_truth(Path(truth) if truth else
                                         settings.paths.data_dir / "truth.parquet")
                job = run_training_job(
                    settings, warehouse=Path(warehouse) if warehouse else None,
                    as_of_start=as_of_start, as_of_end=as_of_end, truth=truth_frame,
                    register=not no_register, progress=tick)
            except (FileNotFoundError, NotEnoughHistoryError, ValueError) as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
    _print(job.report, out, as_json)


class _progress:
    """Rich progress bars on stderr, one per stage reported by the library."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("{task.description:<10}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                            transient=True)
        self.tasks: dict[str, Any] = {}

    def __enter__(self):
        self.bar.__enter__()
        return self.tick

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def tick(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


def _print(report: dict[str, Any], console: Any, as_json: bool) -> None:
    from rich.table import Table

    from training.evaluate import jsonable
    from training.pipeline import metrics_rows

    rows = metrics_rows(report)
    promotions = {label: m.get("promotion") for label, m in report["models"].items()}
    if as_json:
        payload = {"run": {k: v for k, v in report["run"].items() if k != "features"},
                   "metrics": rows, "promotions": promotions, "warnings": report["warnings"]}
        typer.echo(json.dumps(jsonable(payload), indent=2))
        return
    table = Table(title=f"Held-out test: {report['run'].get('data_window', '')}")
    table.add_column("model", no_wrap=True)
    table.add_column("scorer", no_wrap=True)
    for c in _COLUMNS:
        table.add_column(_HEADERS.get(c, c), justify="right", no_wrap=True)
    table.add_column("alias", no_wrap=True)
    last = None
    for r in rows:
        table.add_row("" if r["model"] == last else r["model"], r["scorer"],
                      *(_cell(r.get(c)) for c in _COLUMNS), r.get("alias") or "",
                      end_section=False)
        last = r["model"]
    console.print(table)
    for label, m in report["models"].items():
        bt = m.get("backtest", {})
        if bt.get("model_roc_auc_mean") is not None:
            console.print(f"{label}: backtest ROC AUC {bt['model_roc_auc_mean']:.3f} "
                          f"(mean of {len(bt['folds'])} folds)")
    for p in promotions.values():
        if p:
            console.print(f"{p['model_name']} v{p['version']} -> [bold]{p['alias']}[/bold]: "
                          f"{p['reason']}")
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if report["run"].get("run_id"):
        console.print(f"MLflow run {report['run']['run_id']}")


def _cell(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)
