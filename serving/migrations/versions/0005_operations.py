"""Operations: playbook tasks, the daily run log, the store-level job lock and the stored
probabilities the monitoring reads (models in serving/operations_store.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("playbook", sa.String(100)),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("completed_at", TZ),
    )
    op.create_index("ix_tasks_account", "tasks", ["account_id"])
    op.create_index("ix_tasks_status_due", "tasks", ["status", "due_date"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("as_of", sa.Date()),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runner", sa.String(200), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_job_runs_job_date", "job_runs", ["job", "run_date"])
    op.create_table(
        "job_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_table(
        "score_probabilities",
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("probability", sa.Float(), nullable=False),
    )
    op.create_index("ix_score_probabilities_as_of", "score_probabilities", ["as_of"])


def downgrade() -> None:
    op.drop_index("ix_score_probabilities_as_of", "score_probabilities")
    op.drop_table("score_probabilities")
    op.drop_table("job_locks")
    op.drop_index("ix_job_runs_job_date", "job_runs")
    op.drop_table("job_runs")
    op.drop_index("ix_tasks_status_due", "tasks")
    op.drop_index("ix_tasks_account", "tasks")
    op.drop_table("tasks")
