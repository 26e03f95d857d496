"""The latest checkpoint of each active call (resuming a call whose worker died).

Revision ID: 0003_call_checkpoints
Revises: 0002_call_outcomes
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_call_checkpoints"
down_revision: str | None = "0002_call_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "call_checkpoints",
        sa.Column("call_id", sa.String(80), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_checkpoints_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_call_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("call_checkpoints")
