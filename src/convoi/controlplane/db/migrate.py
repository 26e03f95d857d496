"""Alembic, driven from code: ``upgrade_to_head(url)`` and ``current_revision(url)``.

The migration scripts live in ``convoi/controlplane/migrations`` (no ``alembic.ini`` needed);
``convoi-api migrate`` and the app's start-up (``CONVOI_AUTO_MIGRATE``) call :func:`upgrade_to_head`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from convoi.controlplane.db.engine import Database

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade_to_head",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database: Database | None = None) -> Config:
    """An Alembic config for our scripts; ``database`` (if given) is the one migrated."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database"] = database
    return config


def upgrade_to_head(url: str | URL | Database) -> str | None:
    """Apply every pending migration; returns the revision the database is now at."""
    database = url if isinstance(url, Database) else Database(url)
    try:
        command.upgrade(alembic_config(database), "head")
        return current_revision(database)
    finally:
        if database is not url:
            database.dispose()


def current_revision(database: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision of the scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
