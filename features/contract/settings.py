"""Settings of ingestion: what to do with rows that break a soft rule of the contract, and how
much of the input it holds in memory at a time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from features.settings import Section

Policy = Literal["drop", "keep", "fail"]


class IngestConfig(Section):
    duplicates: Policy = "drop"
    """Rows whose key repeats: keep the first (drop), keep all, or refuse the load."""
    events_before_signup: Policy = "keep"
    """Event rows dated before the day of their account's created_at: drop, keep, or refuse."""
    usage_before_subscription: Policy = "keep"
    """usage_events rows dated before the account's first subscription start."""
    churn_flag_mismatch: Policy = "keep"
    """An accounts churn-flag attribute that disagrees with churn_events: drop blanks the
    disagreeing flags (the attribute stays, those cells become empty), keep, or refuse."""
    churn_flag_column: str = "churn_flag"
    """Name of the accounts custom attribute checked against churn_events ("" for none)."""
    max_examples: int = Field(default=5, ge=0)
    """Examples shown per problem in a validation report."""
    problems_file_rows: int = Field(default=100_000, ge=0)
    """Rows listed per problem in the problems file beside the warehouse (every row up to this
    many; the file says how many more a problem has)."""
    chunk_rows: int = Field(default=500_000, ge=1)
    """Rows read and checked at a time (accounts excepted: checked whole); bounds the memory of
    an ingest, whatever the size of the input."""
    memory_limit: str = "512MB"
    """Memory DuckDB may use while ingesting (reading, staging, sorting); beyond it spills to a
    staging folder beside the warehouse, which needs free disk space about the size of the
    input."""
