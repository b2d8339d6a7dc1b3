"""`healthscore predict`: every account's rules score and six probabilities at a date, to a file.

A data scientist's batch view of what the API's `/v1/predict` answers one account at a time: the
same `scoring.pipeline.score_accounts` call, so the numbers are the API's. One row per account
active at the date (`score_accounts` with no ids: the portfolio): `account_id`, `name`, `as_of`,
`account_status`, `score`, `band`, one column per model label (`churn_30d` ... `expansion_90d`),
and `probabilities_note` when there are no models.
It reads the warehouse and the models only: it writes no scores, events or alerts (that is the
daily `healthscore score`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from features.progress import progress_bar
from scoring.cli_support import AsOf, RulesFile, Warehouse, open_warehouse, scorer_of, settings_of

FORMATS = {".parquet": "parquet", ".csv": "csv"}
LEADING = ["account_id", "name", "as_of", "account_status", "score", "band"]


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def prediction_table(frame: object) -> pd.DataFrame:
    """The file's rows from a `ScoredFrame`: identity, status, score and band, then the
    probabilities in label order (`churn_30d`, ..., `expansion_90d`)."""
    scores = frame.scores  # type: ignore[attr-defined]
    probs = frame.probabilities  # type: ignore[attr-defined]
    out = pd.DataFrame({"account_id": scores["account_id"].astype(str).to_numpy(),
                        "name": scores["name"].to_numpy(),
                        "as_of": pd.Timestamp(frame.as_of),  # type: ignore[attr-defined]
                        "account_status": scores["account_status"].to_numpy(),
                        "score": scores["score"].to_numpy(dtype=float),
                        "band": scores["band"].to_numpy()})
    labels = sorted(probs.columns, key=lambda c: (c.split("_")[0], int(c.split("_")[1][:-1])))
    for label in labels:
        out[label] = probs[label].to_numpy(dtype=float)
    out["probabilities_note"] = scores["probabilities_note"].to_numpy()
    return out


def write_table(table: pd.DataFrame, out: Path) -> None:
    kind = FORMATS[out.suffix.lower()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    # Written next to the target and renamed: a reader never sees half a file.
    if kind == "parquet":
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    tmp.replace(out)


def predict(
    ctx: typer.Context,
    as_of: AsOf = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="File to write: .parquet or .csv [default: CSV on standard output].")] = None,
    warehouse: Warehouse = None,
    rules_file: RulesFile = None,
) -> None:
    """Write the rules score, band and six probabilities of every active account at a date."""
    import sys

    from rich.console import Console

    from features.contract.warehouse import today
    from scoring.pipeline import score_accounts

    if out is not None and out.suffix.lower() not in FORMATS:
        raise typer.BadParameter(f"{out}: the file must end in .parquet or .csv",
                                 param_hint="--out")
    settings = settings_of(ctx)
    scorer = scorer_of(settings, rules_file)
    con = open_warehouse(settings, warehouse)
    when = as_of.date() if as_of else today(con)
    err = Console(stderr=True)
    err.print(f"as of {when}" + ("" if as_of else " (the warehouse's today)"))
    if scorer.models is None:
        err.print(f"[yellow]no probabilities: {scorer.models_note}[/yellow]")
    try:
        with progress_bar(f"predict {when}", console=err) as report:
            frame = score_accounts(con, None, when, scorer, trend=False, progress=report)
    finally:
        con.close()
    table = prediction_table(frame)
    if out is None:
        table.to_csv(sys.stdout, index=False)
        return
    write_table(table, out)
    err.print(f"{len(table)} accounts written to {out}")
