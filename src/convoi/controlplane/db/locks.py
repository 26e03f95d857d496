"""Locks that hold across API processes, taken inside a session's transaction.

With several ``convoi-api`` processes on one database, a lock in one process's memory protects
nothing. These take the database's own lock and release it when the transaction ends (commit or
rollback), so a crashed process can never leave one behind:

- PostgreSQL: transaction-level advisory locks (``pg_advisory_xact_lock`` /
  ``pg_try_advisory_xact_lock``), keyed by a namespace and, for per-account locks, the
  account id's ``hashtext``;
- SQLite: the database's single write lock, taken at once by a write that changes nothing (every
  process then waits for it up to the busy timeout). SQLite has one lock for everything, so a
  "try" waits too, and a per-account lock serialises all accounts: fine for the single process
  SQLite is meant for.

:func:`lock_account` serialises "count the account's live calls, then insert one";
:func:`try_exclusive` lets only one process at a time run a periodic duty (the call lease sweep).
"""

from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["lock_account", "namespace_id", "try_exclusive"]

_SQLITE_WRITE_LOCK = text("UPDATE accounts SET id = id WHERE 0")


def namespace_id(name: str) -> int:
    """A stable 31-bit advisory-lock key for ``name`` (CRC-32, fits PostgreSQL's int4)."""
    return zlib.crc32(name.encode()) & 0x7FFF_FFFF


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_account(session: Session, account_id: str, namespace: str = "convoi.admission") -> None:
    """Wait for the account's lock (held until this transaction ends)."""
    if _is_postgres(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), hashtext(:account))"),
            {"ns": namespace_id(namespace), "account": account_id},
        )
    else:
        session.execute(_SQLITE_WRITE_LOCK)


def try_exclusive(session: Session, name: str) -> bool:
    """Take the lock ``name`` for this transaction if free; False if another holds it."""
    if _is_postgres(session):
        taken = session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": namespace_id(name)}
        )
        return bool(taken)
    session.execute(_SQLITE_WRITE_LOCK)
    return True
