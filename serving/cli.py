"""The `healthscore` command line: one Typer app, assembled from each package's commands.

Only option parsing, progress and output live here and in the packages' `cli` modules; every
command calls library functions. Heavy imports happen inside commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features import cli as features_cli

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
    from features.config import load_settings

    ctx.obj = load_settings(config)


features_cli.register(app)

for _module in ("training.cli", "serving.commands", "serving.serve_cli", "serving.explain_cli"):
    try:
        __import__(_module)
    except ModuleNotFoundError as exc:  # a package whose commands are not written yet
        if exc.name != _module:
            raise
    else:
        import sys

        sys.modules[_module].register(app)
