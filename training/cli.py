"""The `train` command: option parsing, progress bars and the metrics table; nothing else.

`healthscore train` trains the churn and expansion models from the warehouse
(training.pipeline); `healthscore train --table FILE --label COL ...` trains one model on a flat
file (training.table). Both print one row per model and scorer; `--json` prints the same rows
(and the promotions, notes and warnings) as JSON on stdout, with progress on stderr.

Every field of `TrainingConfig` is a flag of `train`, derived from the model (`--valid-dates 1`,
`--horizons 30,60`, `--monotone-churn/--no-monotone-churn`; help from the field's docstring), so
a new setting is a flag without touching this module. A flag overrides the config file, which
overrides the defaults; an invalid value is reported against its flag.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import typing
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError

from training.settings import TrainingConfig, flag_name

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
    app.command("train")(with_training_flags(train))


_DROP = typer.Option(None, "--drop", help="--table: column to leave out (repeatable).")
_HEADERS = {"positives": "pos", "roc_auc": "AUC", "pr_auc": "PR AUC", "top_decile_lift": "lift10",
            "recall_at_10pct": "rec10", "brier": "Brier", "ece": "ECE"}
_COLUMNS = ("rows", "positives", "roc_auc", "pr_auc", "top_decile_lift", "recall_at_10pct",
            "brier", "ece")


_PANEL = "Training settings (training.* of the config)"


def _is_sequence(name: str) -> bool:
    return "tuple" in str(TrainingConfig.model_fields[name].annotation)


def _flag_parameter(name: str) -> inspect.Parameter:
    """A Typer option for one TrainingConfig field: a --x/--no-x switch for a bool, else a
    value parsed by the model (comma-separated for a sequence)."""
    info = TrainingConfig.model_fields[name]
    default = info.get_default(call_default_factory=True)
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    help_text = " ".join((info.description or "").split()) + f" Default: {shown}."
    flag = flag_name(name)
    if info.annotation is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text,
                              rich_help_panel=_PANEL, show_default=False)
        annotation: Any = bool | None
    else:
        metavar = "A,B,..." if _is_sequence(name) else "VALUE"
        option = typer.Option(None, flag, help=help_text, metavar=metavar,
                              rich_help_panel=_PANEL, show_default=False)
        annotation = str | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def with_training_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per TrainingConfig field; it receives the given ones as a
    dict `training` (field -> raw value), the others left out."""
    fields = list(TrainingConfig.model_fields)
    own = [p for n, p in inspect.signature(command).parameters.items() if n != "training"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        given = {n: kwargs.pop(n) for n in fields}
        command(**kwargs, training={n: v for n, v in given.items() if v is not None})

    params = [*own, *(_flag_parameter(n) for n in fields)]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # Typer reads the signature above, not the command's
    return wrapper


def apply_training_flags(cfg: TrainingConfig, given: dict[str, Any]) -> TrainingConfig:
    """The config with the flags' values on top, validated; an error names the flag."""
    values: dict[str, Any] = {}
    for name, raw in given.items():
        if isinstance(raw, str) and raw.strip().lower() in ("none", "") and \
                TrainingConfig.model_fields[name].default is None:
            values[name] = None
        elif isinstance(raw, str) and _is_sequence(name) and (
                "," in raw or typing.get_origin(TrainingConfig.model_fields[name].annotation)
                is tuple):
            # `30,60` is a list; a lone value is one too, unless the field takes a scalar
            # first (num_leaves: `8` is one value, `4,8` candidates)
            values[name] = [x.strip() for x in raw.split(",") if x.strip()]
        else:
            values[name] = raw
    try:
        return TrainingConfig.model_validate(cfg.model_dump() | values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            where = flag_name(field) if field in given else f"training.{field} (config)"
            problems.append(f"{where}: {e['msg']} (got {given.get(field, e.get('input'))!r})")
        first = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
        raise typer.BadParameter("; ".join(problems),
                                 param_hint=flag_name(first) if first in given else None
                                 ) from None


def train(
    ctx: typer.Context,
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
    no_register: bool = typer.Option(False, "--no-register", help="Skip MLflow (no run, no "
                                     "registry); bundles are still saved."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    *,
    training: dict[str, Any],
) -> None:
    """Train, backtest, evaluate against the baselines and register the models.

    Defaults fit the history at hand: horizons that do not fit are skipped and the backtest's
    windows shrink (a note says so); every training setting is a flag below."""
    from pathlib import Path

    from rich.console import Console

    settings = ctx.obj
    if training:
        settings = settings.model_copy(
            update={"training": apply_training_flags(settings.training, training)})
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
                    truth=truth_frame,
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
                   "metrics": rows, "promotions": promotions, "notes": report.get("notes", []),
                   "warnings": report["warnings"]}
        typer.echo(json.dumps(jsonable(payload), indent=2))
        return
    pooled = any(m.get("champion") for m in report["models"].values())
    title = "Backtest, every fold's test rows pooled" if pooled else "Held-out test"
    table = Table(title=f"{title}: {report['run'].get('data_window', '')}")
    table.add_column("model", no_wrap=True)
    table.add_column("scorer", no_wrap=True)
    for c in _COLUMNS:
        table.add_column(_HEADERS.get(c, c), justify="right", no_wrap=True)
    table.add_column("alias", no_wrap=True)
    last = None
    for r in rows:
        table.add_row("" if r["model"] == last else r["model"],
                      r["scorer"] + (" *" if r.get("champion") and pooled else ""),
                      *(_cell(r.get(c)) for c in _COLUMNS), r.get("alias") or "",
                      end_section=False)
        last = r["model"]
    console.print(table)
    for label, m in report["models"].items():
        bt = m.get("backtest", {})
        champ = m.get("champion")
        if champ:
            from training.selection import shown_auc

            console.print(f"{label}: champion [bold]{champ['scorer']}[/bold] by {champ['basis']}"
                          ": " + ", ".join(f"{k} {shown_auc(champ, k)}"
                                           for k in champ["roc_auc"]), highlight=False)
        elif bt.get("model_roc_auc_mean") is not None:
            console.print(f"{label}: backtest ROC AUC {bt['model_roc_auc_mean']:.3f} "
                          f"(mean of {len(bt['folds'])} folds)")
    for p in promotions.values():
        if p:
            console.print(f"{p['model_name']} v{p['version']} -> [bold]{p['alias']}[/bold]: "
                          f"{p['reason']}")
    for label, m in report["models"].items():
        seen = m.get("trained_on")
        if seen:
            console.print(f"{label}: registered model refit on {seen['rows']} rows "
                          f"({seen['positives']} positives), as-of {seen['first_as_of']} .. "
                          f"{seen['last_as_of']}, " + _model_shape(m))
    for n in report.get("notes", []):
        console.print(f"[cyan]note:[/cyan] {n}", highlight=False)
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if report["run"].get("run_id"):
        console.print(f"MLflow run {report['run']['run_id']}")


def _model_shape(m: dict[str, Any]) -> str:
    """What the registered model is, in a few words: its trees, or its kind."""
    kind = m.get("kind", "lightgbm")
    if kind == "lightgbm":
        return f"{m['trees']} trees"
    if kind == "lightgbm_on_logistic":
        return f"{m['trees']} trees boosted from a logistic fit"
    return str(kind)


def _cell(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)
