"""Listing an account's calls: ``GET /api/v1/public/calls``, newest first, cursor-paginated.

Keyset pagination on ``(created_at, id)`` descending: the opaque ``next_cursor`` encodes the
last call of the page, and the next page starts strictly after it. Calls created while a client
pages are newer than every cursor, so they never shift or repeat a later page (they appear on a
fresh first page). Filters (``status``, ``type``, ``agent_id``, ``squad_id``,
``created_after`` inclusive, ``created_before`` exclusive) narrow the same ordering; a cursor
is only meaningful with the filters it was issued for.

Listing needs a secret key: a publishable key ships in web pages, so a list would hand any
visitor every call of the account (it may still read a web call whose id it holds).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import Call
from convoi.controlplane.errors import InvalidRequest

__all__ = ["MAX_LIMIT", "CallFilters", "decode_cursor", "encode_cursor", "list_calls"]

MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class CallFilters:
    """What a list request narrows to (None: any)."""

    status: str | None = None
    type: str | None = None
    agent_id: str | None = None
    squad_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def encode_cursor(call: Call) -> str:
    """The opaque cursor that resumes after ``call``."""
    created = call.created_at.astimezone(UTC).isoformat()
    raw = json.dumps([created, call.id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of a cursor; 422 ``invalid_cursor`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, call_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if not isinstance(call_id, str) or moment.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "cursor is not a next_cursor this API returned", field="cursor", code="invalid_cursor"
        ) from None
    return moment, call_id


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise InvalidRequest(f"{name} needs a timezone (e.g. 2026-06-05T10:00:00Z)", field=name)
    return moment


def list_calls(
    session: Session,
    account_id: str,
    filters: CallFilters,
    *,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[Call], str | None]:
    """One page of the account's calls and the cursor of the next (None on the last page)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    query = select(Call).where(Call.account_id == account_id)
    for column, value in (
        (Call.status, filters.status),
        (Call.type, filters.type),
        (Call.agent_id, filters.agent_id),
        (Call.squad_id, filters.squad_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if (after := _aware(filters.created_after, "created_after")) is not None:
        query = query.where(Call.created_at >= after)
    if (before := _aware(filters.created_before, "created_before")) is not None:
        query = query.where(Call.created_at < before)
    if cursor is not None:
        created, call_id = decode_cursor(cursor)
        query = query.where(
            or_(Call.created_at < created, and_(Call.created_at == created, Call.id < call_id))
        )
    query = query.order_by(Call.created_at.desc(), Call.id.desc()).limit(limit + 1)
    calls = list(session.scalars(query))
    if len(calls) <= limit:
        return calls, None
    page = calls[:limit]
    return page, encode_cursor(page[-1])
