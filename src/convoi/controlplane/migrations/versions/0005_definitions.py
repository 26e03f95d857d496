"""Definitions belong to accounts: versioned agents, squads, phone numbers, knowledge bases.

Revision ID: 0005_definitions
Revises: 0004_webhooks
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_definitions"
down_revision: str | None = "0004_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "definition_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("object_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("deleted_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_definition_versions_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_definition_versions")),
        sa.UniqueConstraint(
            "account_id",
            "object_id",
            "version",
            name=op.f("uq_definition_versions_account_id"),
        ),
    )
    op.create_index(
        "ix_definition_versions_account_id_kind", "definition_versions", ["account_id", "kind"]
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("definition_versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("definition_versions")
    op.drop_index("ix_definition_versions_account_id_kind", table_name="definition_versions")
    op.drop_table("definition_versions")
