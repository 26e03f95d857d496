"""Storage of the control plane: tables, engine and Alembic migrations."""

from convoi.controlplane.db.engine import Database, normalize_url
from convoi.controlplane.db.migrate import current_revision, head_revision, upgrade_to_head
from convoi.controlplane.db.models import (
    Account,
    ApiKey,
    Base,
    Call,
    CallEventRecord,
    IdempotencyRecord,
    utcnow,
)

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "Call",
    "CallEventRecord",
    "Database",
    "IdempotencyRecord",
    "current_revision",
    "head_revision",
    "normalize_url",
    "upgrade_to_head",
    "utcnow",
]
