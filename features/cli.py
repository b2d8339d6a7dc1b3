"""Commands of the features package: generate, ingest, features."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app (filled in by the commands below)."""
