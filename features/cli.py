"""Commands of the features package: generate, ingest, features.

Each command parses options, shows progress with rich and calls one library function; no logic
lives here. Heavy imports stay inside the commands so `healthscore --help` is fast.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
    app.command("generate")(generate)
    app.command("ingest")(ingest)
    app.command("features")(features)


# --- generate: owned by the generator work (features/generate.py) ----------------------------
def generate() -> None:
    """Generate a synthetic B2B SaaS world in the contract format."""
    raise typer.Exit("not implemented yet")


# --- ingest: owned by the ingestion work (features/ingest.py) ---------------------------------
def ingest() -> None:
    """Validate a data folder and load it into the DuckDB warehouse in one transaction."""
    raise typer.Exit("not implemented yet")


# --- features: owned by the feature work (features/build.py) ----------------------------------
def features() -> None:
    """Build point-in-time features for the active accounts as of a date."""
    raise typer.Exit("not implemented yet")
