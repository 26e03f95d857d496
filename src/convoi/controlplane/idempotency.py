"""``Idempotency-Key`` for ``POST /api/v1/public/calls`` (per account, 24 hours).

- First request with a key: the key is *claimed* (a row with the request's hash and no response
  yet), the call is created, and the 201 response (status and exact body) is stored.
- Same key, same body (compared as canonical JSON: sorted keys, no whitespace) within 24 h: the
  stored response is replayed byte for byte; nothing is created, LiveKit is not called.
- Same key, different body: 422 ``idempotency_key_reused`` (as the IETF draft
  "The Idempotency-Key HTTP Header Field" recommends for a reused key with another payload).
- Same key while the first request is still running: 409 ``idempotency_key_in_use``; a claim
  older than :data:`LOCK_TIMEOUT` is taken as abandoned (crashed process) and taken over.
- Only success is stored: a request that fails validation (4xx) or LiveKit (502/503) releases the
  key, so the client can fix the body or simply retry.
- After 24 h the key is forgotten and may be used again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import IdempotencyRecord, utcnow
from convoi.controlplane.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest

__all__ = [
    "HEADER",
    "LOCK_TIMEOUT",
    "MAX_KEY_LENGTH",
    "REPLAY_WINDOW",
    "Claim",
    "Replay",
    "canonical_hash",
    "check_key",
    "claim",
    "complete",
    "purge_expired",
    "release",
]

HEADER = "Idempotency-Key"
REPLAY_WINDOW = timedelta(hours=24)
LOCK_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    """A stored response to send again."""

    status_code: int
    body: str


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key; complete or release it."""

    record_id: int


def canonical_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of ``body`` as canonical JSON (sorted keys, compact separators, UTF-8)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_key(key: str) -> str:
    """The key, if it is 1-255 visible ASCII characters; else 422 naming the header."""
    if not key or len(key) > MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidRequest(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} visible ASCII characters (e.g. a UUID)",
            field=HEADER,
        )
    return key


def _find(session: Session, account_id: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
        )
    )


def claim(
    session: Session,
    account_id: str,
    key: str,
    request_hash: str,
    *,
    now: datetime | None = None,
    commit: bool = True,
) -> Replay | Claim:
    """Claim ``key`` for this request, or return the response to replay (see module doc).

    ``commit=False``: a new claim is only flushed, and becomes visible with the caller's commit
    (a concurrent request with the same key waits for that commit on the key's unique index,
    then finds the claim). The claim must then be the transaction's first write: a concurrent
    insert of the same key rolls the transaction back before looking again."""
    now = now or utcnow()
    for _ in range(3):  # a concurrent insert of the same key makes us look again
        record = _find(session, account_id, key)
        if record is not None and now - record.created_at > REPLAY_WINDOW:
            session.delete(record)
            session.commit()
            record = None
        if record is None:
            record = IdempotencyRecord(
                account_id=account_id,
                key=key,
                request_hash=request_hash,
                created_at=now,
                locked_at=now,
            )
            session.add(record)
            try:
                if commit:
                    session.commit()
                else:
                    session.flush()
            except IntegrityError:
                session.rollback()
                continue
            return Claim(record.id)
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused(
                f"{HEADER} {key!r} was already used with a different request body; "
                "use a new key for a new request",
                field=HEADER,
            )
        if record.response_status is not None and record.response_body is not None:
            return Replay(record.response_status, record.response_body)
        if now - record.locked_at < LOCK_TIMEOUT:
            raise IdempotencyKeyInUse(
                f"a request with {HEADER} {key!r} is still being processed; retry shortly",
                field=HEADER,
            )
        taken = session.execute(  # abandoned claim: take it over unless someone else just did
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == record.id,
                IdempotencyRecord.locked_at == record.locked_at,
                IdempotencyRecord.response_status.is_(None),
            )
            .values(locked_at=now)
        )
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]  # DML returns a CursorResult; Session.execute says Result
            return Claim(record.id)
    raise IdempotencyKeyInUse(f"{HEADER} {key!r} is contended; retry shortly", field=HEADER)


def complete(session: Session, claimed: Claim, status_code: int, body: str, call_id: str) -> None:
    """Store the response to replay. Commits."""
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == claimed.record_id)
        .values(response_status=status_code, response_body=body, call_id=call_id),
        execution_options={"synchronize_session": False},
    )
    session.commit()


def release(session: Session, claimed: Claim) -> None:
    """Forget the key (the request failed and may be retried). Commits."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == claimed.record_id))
    session.commit()


def purge_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete keys older than the replay window; returns how many. Commits."""
    cutoff = (now or utcnow()) - REPLAY_WINDOW
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]  # DML returns a CursorResult; Session.execute says Result
