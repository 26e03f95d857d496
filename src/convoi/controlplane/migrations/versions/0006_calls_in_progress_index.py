"""An index for counting an account's calls in progress (the concurrency limit, every create).

Without it the count walked every call the account ever made (``ix_calls_account_id_created_at``
narrows by account only), so a create got slower with the account's history.

Revision ID: 0006_calls_in_progress_index
Revises: 0005_definitions
Create Date: 2026-12-02 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_calls_in_progress_index"
down_revision: str | None = "0005_definitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_calls_account_id_status", "calls", ["account_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_calls_account_id_status", table_name="calls")
