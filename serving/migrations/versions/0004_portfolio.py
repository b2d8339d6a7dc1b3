"""Portfolio intelligence: the lifecycle journey and the detected usage anomalies (models in
serving/portfolio_store.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lifecycle_journey",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("from_stage", sa.String(32)),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.UniqueConstraint("account_id", "as_of", name="uq_journey_account_day"),
    )
    op.create_index("ix_lifecycle_journey_as_of", "lifecycle_journey", ["as_of"])
    op.create_table(
        "usage_anomalies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("expected", sa.Float(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=False),
        sa.Column("change", sa.Float(), nullable=False),
        sa.Column("z", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="SET NULL")),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("detected_at", TZ, nullable=False),
        sa.UniqueConstraint("account_id", "metric", "as_of",
                            name="uq_anomaly_account_metric_day"),
    )
    op.create_index("ix_usage_anomalies_as_of", "usage_anomalies", ["as_of"])


def downgrade() -> None:
    op.drop_index("ix_usage_anomalies_as_of", "usage_anomalies")
    op.drop_table("usage_anomalies")
    op.drop_index("ix_lifecycle_journey_as_of", "lifecycle_journey")
    op.drop_table("lifecycle_journey")
