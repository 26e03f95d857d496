"""Alembic environment of the control plane (online migrations only).

Run through ``convoi-api migrate`` (or :func:`convoi.controlplane.db.upgrade_to_head`), which hands
the :class:`~convoi.controlplane.db.Database` over in ``config.attributes["database"]``; without
it the URL comes from ``CONVOI_DATABASE_URL``. SQLite runs in batch mode so later ``ALTER``s work.
"""

from __future__ import annotations

import os

from alembic import context

from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.models import Base
from convoi.controlplane.settings import DEFAULT_DATABASE_URL

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate the configured database in one transaction per migration run."""
    database: Database | None = config.attributes.get("database")
    owned = database is None
    if database is None:
        database = Database(os.environ.get("CONVOI_DATABASE_URL", DEFAULT_DATABASE_URL))
    try:
        with database.engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if owned:
            database.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run convoi-api migrate")
run_migrations_online()
