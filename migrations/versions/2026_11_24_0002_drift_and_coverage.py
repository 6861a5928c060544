"""Drift and coverage on runs; whether a gateway's listing is ordered.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUN_COUNTERS = ("total_count_changes", "repeated_ids", "rereads", "sessions_gone")


def upgrade() -> None:
    for name in _RUN_COUNTERS:
        op.add_column(
            "harvest_runs",
            sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0")),
        )
    op.add_column("harvest_runs", sa.Column("complete", sa.Boolean()))
    op.add_column("harvest_runs", sa.Column("notes", sa.Text()))
    op.add_column("harvest_targets", sa.Column("listing_ordered", sa.Boolean()))


def downgrade() -> None:
    with op.batch_alter_table("harvest_targets") as batch:
        batch.drop_column("listing_ordered")
    with op.batch_alter_table("harvest_runs") as batch:
        for name in ("notes", "complete", *reversed(_RUN_COUNTERS)):
            batch.drop_column(name)
