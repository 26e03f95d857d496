"""SQLite storage of received call events, de-duplicated by id (no web framework involved).

Tables:

- ``events``: every distinct event (``id`` primary key, ``call_id``, ``sequence``, ``type``,
  ``status``, ``received_at``, ``body`` = the JSON as received) plus ``duplicates``, how many more
  times the same id arrived afterwards (each one answered "duplicate", nothing re-applied).
- ``calls``: the latest state per call (status, ended_reason, fault, duration, cost amount and
  currency, metadata), taken from the event with the highest ``sequence`` seen so far: an older
  sequence arriving late never overwrites a newer state. ``events_received`` counts the distinct
  events applied.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from convoi.reporting.events import CallEvent

__all__ = ["ReceivedCall", "ReceiverStore", "RecordOutcome", "StoredEvent"]

RecordOutcome = Literal["stored", "duplicate"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_call_sequence ON events (call_id, sequence);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    ended_reason TEXT,
    fault TEXT,
    duration_seconds REAL NOT NULL,
    cost_amount TEXT NOT NULL,
    cost_currency TEXT NOT NULL,
    metadata TEXT,
    events_received INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""

_EVENT_COLUMNS = "id, call_id, sequence, type, status, received_at, body, duplicates"
_CALL_COLUMNS = (
    "call_id, sequence, status, ended_reason, fault, duration_seconds, cost_amount,"
    " cost_currency, metadata, events_received, updated_at"
)
_STATE_FIELDS = (
    "sequence = ?, status = ?, ended_reason = ?, fault = ?, duration_seconds = ?,"
    " cost_amount = ?, cost_currency = ?, metadata = ?, updated_at = ?"
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event."""

    id: str
    call_id: str
    sequence: int
    type: str
    status: str
    received_at: float
    body: str
    duplicates: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view: the columns, with ``body`` parsed as ``event``."""
        data = asdict(self)
        data["event"] = json.loads(data.pop("body"))
        return data


@dataclass(frozen=True, slots=True)
class ReceivedCall:
    """The latest known state of a call, as received (one row of ``calls``)."""

    call_id: str
    sequence: int
    status: str
    ended_reason: str | None
    fault: str | None
    duration_seconds: float
    cost_amount: str
    """Exact decimal, as a string."""
    cost_currency: str
    metadata: dict[str, Any] | None
    events_received: int
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


class ReceiverStore:
    """The reference receiver's events and calls, in the SQLite file at ``path`` (``":memory:"``
    works too). Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def record(
        self, event: CallEvent, body: str, *, received_at: float | None = None
    ) -> RecordOutcome:
        """Store ``event`` (``body``: its JSON as received) unless its id is already stored.

        A new event also updates the call's state if its sequence is the highest seen so far.
        Returns ``"stored"`` or ``"duplicate"``.
        """
        received_at = time.time() if received_at is None else received_at
        state = (
            event.sequence,
            event.status,
            event.ended_reason,
            event.fault,
            event.duration_seconds,
            str(event.cost.amount),
            event.cost.currency,
            None if event.metadata is None else json.dumps(event.metadata),
            received_at,
        )
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                inserted = db.execute(
                    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (
                        event.id,
                        event.call_id,
                        event.sequence,
                        event.type,
                        event.status,
                        received_at,
                        body,
                    ),
                ).rowcount
                if not inserted:
                    db.execute(
                        "UPDATE events SET duplicates = duplicates + 1 WHERE id = ?", (event.id,)
                    )
                    db.execute("COMMIT")
                    return "duplicate"
                known = db.execute(
                    "UPDATE calls SET events_received = events_received + 1 WHERE call_id = ?",
                    (event.call_id,),
                ).rowcount
                if known:
                    db.execute(
                        f"UPDATE calls SET {_STATE_FIELDS} WHERE call_id = ? AND sequence < ?",
                        (*state, event.call_id, event.sequence),
                    )
                else:
                    db.execute(
                        f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                        (event.call_id, *state),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return "stored"

    def events(self, call_id: str) -> list[StoredEvent]:
        """The call's events in sequence order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE call_id = ? ORDER BY sequence, id",
                (call_id,),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def event(self, event_id: str) -> StoredEvent | None:
        """One event by id."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return None if row is None else StoredEvent(*row)

    def call(self, call_id: str) -> ReceivedCall | None:
        """The call's latest state, or ``None`` if no event of it was received."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = ?", (call_id,)
            ).fetchone()
        if row is None:
            return None
        values = list(row)
        values[8] = None if values[8] is None else json.loads(values[8])
        return ReceivedCall(*values)

    def event_count(self) -> int:
        """How many distinct events are stored."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
