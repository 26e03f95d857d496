"""Calls keep what became of a transfer and of answering-machine detection.

Revision ID: 0002_call_outcomes
Revises: 0001_initial
Create Date: 2026-12-01 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_call_outcomes"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("transfer", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("voicemail", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("voicemail")
        batch.drop_column("transfer")
