"""Create health_scores: one rules score per account and as-of date.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSIONS = ("engagement", "adoption", "usage", "support", "satisfaction", "value",
              "relationship")


def upgrade() -> None:
    op.create_table(
        "health_scores",
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("score", sa.Float()),
        sa.Column("grade", sa.String(8)),
        sa.Column("band", sa.String(64)),
        sa.Column("colour", sa.String(16)),
        sa.Column("status", sa.String(16)),
        sa.Column("trend", sa.String(16)),
        sa.Column("previous_score", sa.Float()),
        *[sa.Column(f"dim_{d}", sa.Float()) for d in DIMENSIONS],
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("config_version", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_health_scores_as_of", "health_scores", ["as_of"])


def downgrade() -> None:
    op.drop_index("ix_health_scores_as_of", table_name="health_scores")
    op.drop_table("health_scores")
