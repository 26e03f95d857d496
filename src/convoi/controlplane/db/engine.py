"""Engine and sessions for a database URL: a SQLite file by default, PostgreSQL (psycopg 3).

SQLite gets foreign keys on, WAL journaling (``synchronous = NORMAL``) and a busy timeout, and its
parent folder created; PostgreSQL gets ``pool_pre_ping``. The pool (size, overflow, how long a
request waits for a connection: :class:`PoolLimits`) is the caller's; a request that cannot get a
connection in time raises :class:`sqlalchemy.exc.TimeoutError`, which the API answers with 503. A ``postgresql://`` or ``postgres://`` URL is read as
``postgresql+psycopg://`` (psycopg 3 is the driver we ship).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "PoolLimits", "normalize_url"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""A writer waits this long for SQLite's write lock before ``database is locked`` (then 503)."""


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Connections kept (``size``), extra under load (``overflow``), wait for one (``timeout``)."""

    size: int = 5
    overflow: int = 10
    timeout: float = 30.0


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``, defaulting PostgreSQL to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode, fewer fsyncs
    cursor.close()


class Database:
    """An engine and its session factory."""

    def __init__(
        self, url: str | URL, *, echo: bool = False, pool: PoolLimits | None = None
    ) -> None:
        self.url = normalize_url(url)
        self.pool = pool or PoolLimits()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if self.is_file_backed:
                Path(str(database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            }
        else:
            kwargs["pool_pre_ping"] = True
        if self.url.get_backend_name() != "sqlite" or self.is_file_backed:
            kwargs.update(
                pool_size=self.pool.size,
                max_overflow=self.pool.overflow,
                pool_timeout=self.pool.timeout,
            )
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_file_backed(self) -> bool:
        """False for an in-memory SQLite database (one per engine: it cannot be shared)."""
        if self.url.get_backend_name() != "sqlite":
            return True
        database = self.url.database
        return bool(database) and database != ":memory:" and not str(database).startswith("file:")

    def with_pool(self, pool: PoolLimits) -> Database:
        """Another engine on the same database with its own pool (this one if in memory)."""
        return Database(self.url, pool=pool) if self.is_file_backed else self

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session; rolled back if the block raises, closed at the end (commit explicitly)."""
        with self.sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
