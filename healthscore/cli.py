"""The `healthscore` command line: one Typer app, assembled from each package's commands.

Only option parsing, progress and output live here and in the packages' command modules; every
command calls library functions. Heavy imports happen inside commands so `--help` stays fast.
The root callback builds the settings once (`ctx.obj`); every command reads them from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features import cli as features_cli
from scoring import predict_cli
from serving import commands as score_commands
from serving import explain_cli, operations_cli, portfolio_cli, serve_cli
from training import cli as training_cli
from training import validate_cli

app = typer.Typer(
    name="healthscore",
    help="Customer health scores and churn/expansion predictions with their reasons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding the defaults.")
    ] = None,
) -> None:
    from healthscore.settings import load_settings

    ctx.obj = load_settings(config)


for _commands in (features_cli, training_cli, validate_cli, score_commands, predict_cli,
                  serve_cli, explain_cli, portfolio_cli, operations_cli):
    _commands.register(app)
