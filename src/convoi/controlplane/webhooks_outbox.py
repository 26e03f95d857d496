"""The customer webhooks' durable outbox: what is enqueued, when, and how deliverers claim it.

**Enqueue** (in the same transaction as the state change that causes it; the caller commits):
:func:`on_status_change` when a call's ``status`` changes (the worker's event applied, a lost
call, a failed create, a canceled call) and :func:`on_call_ended` once per call when it ends.
Each enqueues one row per endpoint of the call's account that wants the event type, all with the
same event id (``evt_`` + 32 hex) and the exact JSON body that will be signed and POSTed::

    {"id": "evt_…", "object": "event", "type": "call.status", "created_at": "…Z",
     "data": {"call_id", "type", "status", "previous", "at", "agent_id", "squad_id",
              "metadata", "customer"}}
    {"id": "evt_…", "object": "event", "type": "call.ended", "created_at": "…Z",
     "data": {"call_id", "type", "status", "ended_reason", "fault", "detail",
              "duration_seconds", "cost": {"amount", "currency", "by_component", "by_member",
              "unpriced"}, "transcript", "handoffs", "latency", "transfer", "voicemail",
              "agent_id", "squad_id", "metadata", "customer", "created_at", "ended_at"}}

``customer`` is ``{"number", "name", "metadata"}`` as sent at create (null if none was).

**Claim** (:func:`claim_due`): pending rows due now, not held by another deliverer, and not
behind an earlier pending row of the same call and endpoint (a call's events go out in order:
the next waits for the previous to be delivered or given up). PostgreSQL selects them ``FOR
UPDATE SKIP LOCKED``; on every backend each row is then taken with a conditional UPDATE of its
lease column (``claimed_until``), so two API processes never send the same row at once. An
endpoint gets at most ``per_endpoint`` deliveries in flight (all deliverers together), so one
slow endpoint cannot take every slot from the others.
**Record** (:func:`record_attempt`): delivered, or retried after an exponential backoff, or
``failed`` once the next attempt would fall past the retry window.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, aliased

from convoi.controlplane.db.models import (
    Call,
    CallEventRecord,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from convoi.controlplane.presenters import amount_number
from convoi.reporting.events import CallEvent

__all__ = [
    "Attempt",
    "Claimed",
    "RetryPolicy",
    "call_deliveries",
    "claim_due",
    "notify_customer",
    "on_call_ended",
    "on_status_change",
    "record_attempt",
]


def _rfc3339(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _customer(call: Call) -> dict[str, Any] | None:
    try:
        spec = json.loads(call.callspec)
    except (ValueError, TypeError):
        return None
    customer = spec.get("customer") if isinstance(spec, dict) else None
    if not isinstance(customer, dict):
        return None
    return {k: customer.get(k) for k in ("number", "name", "metadata")}


def _snapshot(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "type": call.type,
        "agent_id": call.agent_id,
        "squad_id": call.squad_id,
        "metadata": call.call_metadata or {},
        "customer": _customer(call),
    }


def _enqueue(session: Session, call: Call, kind: str, data: dict[str, Any], now: datetime) -> int:
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.account_id == call.account_id, WebhookEndpoint.deleted_at.is_(None)
        )
    ).all()
    wanted = [e for e in endpoints if e.events is None or kind in e.events]
    if not wanted:
        return 0
    event_id = f"evt_{secrets.token_hex(16)}"
    body = {"id": event_id, "object": "event", "type": kind, "created_at": _rfc3339(now)}
    payload = json.dumps({**body, "data": data}, separators=(",", ":"), ensure_ascii=False)
    for endpoint in wanted:
        session.add(
            WebhookDelivery(
                event_id=event_id,
                endpoint_id=endpoint.id,
                account_id=call.account_id,
                call_id=call.id,
                type=kind,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    session.flush()
    return len(wanted)


def on_status_change(
    session: Session, call: Call, previous: str, *, now: datetime | None = None
) -> int:
    """Enqueue ``call.status`` (``call`` holds the new status); the number of rows enqueued."""
    now = now or utcnow()
    if previous == call.status:
        return 0
    data = {**_snapshot(call), "status": call.status, "previous": previous, "at": _rfc3339(now)}
    return _enqueue(session, call, "call.status", data, now)


def _money(value: Decimal | str) -> float:
    return amount_number(str(value))


def _ended_data(call: Call, event: CallEvent | None, now: datetime) -> dict[str, Any]:
    def dump(items: Any) -> list[Any]:
        return [item.model_dump(mode="json") for item in items or ()]

    cost = event.cost if event is not None else None
    return {
        **_snapshot(call),
        "status": call.status,
        "ended_reason": call.ended_reason,
        "fault": call.fault,
        "detail": call.detail,
        "duration_seconds": call.duration_seconds,
        "cost": {
            "amount": amount_number(call.cost_amount),
            "currency": "USD",
            "by_component": {k: _money(v) for k, v in (cost.by_component if cost else {}).items()},
            "by_member": {k: _money(v) for k, v in (cost.by_member if cost else {}).items()},
            "unpriced": list(cost.unpriced) if cost else [],
        },
        "transcript": dump(event.transcript if event else None),
        "handoffs": dump(event.handoffs if event else None),
        "latency": dump(event.latency if event else None),
        "transfer": call.transfer,
        "voicemail": call.voicemail,
        "created_at": _rfc3339(call.created_at),
        "ended_at": _rfc3339(now),
    }


def on_call_ended(
    session: Session, call: Call, event: CallEvent | None = None, *, now: datetime | None = None
) -> int:
    """Enqueue ``call.ended`` (``call`` holds the final state; ``event`` adds transcript,
    handoffs, latency and the cost breakdown when the worker reported them)."""
    now = now or utcnow()
    return _enqueue(session, call, "call.ended", _ended_data(call, event, now), now)


# ------------------------------------------------------------------------------ deliverers


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between attempts and how long to keep trying."""

    base_seconds: float = 5.0
    max_seconds: float = 3600.0
    window: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(seconds=60)
    """How long a claim holds a row (longer than an attempt's timeout)."""

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a deliverer holds: what to POST, where, signed with what."""

    id: int
    event_id: str
    url: str
    secret: str
    payload: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST."""

    ok: bool
    status_code: int | None = None
    error: str | None = None


def _held(session: Session, now: datetime) -> dict[str, int]:
    """Deliveries in flight (claimed, lease not over) per endpoint, across every deliverer."""
    row = WebhookDelivery
    counts = session.execute(
        select(row.endpoint_id, func.count())
        .where(row.status == "pending", row.claimed_until >= now)
        .group_by(row.endpoint_id)
    ).all()
    return {endpoint: int(count) for endpoint, count in counts}


def claim_due(
    session: Session,
    owner: str,
    limit: int,
    now: datetime,
    policy: RetryPolicy,
    *,
    per_endpoint: int | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for ``owner`` (see the module doc), at most
    ``per_endpoint`` in flight per endpoint (a slow endpoint cannot take every slot). Commits."""
    row, earlier = WebhookDelivery, aliased(WebhookDelivery)
    blocked = (
        select(earlier.id)
        .where(
            earlier.endpoint_id == row.endpoint_id,
            earlier.call_id == row.call_id,
            earlier.status == "pending",
            earlier.id < row.id,
        )
        .exists()
    )
    free = or_(row.claimed_until.is_(None), row.claimed_until < now)
    query = (
        select(row.id, row.endpoint_id)
        .where(row.status == "pending", row.next_attempt_at <= now, free, ~blocked)
        .order_by(row.id)
        .limit(limit * 4)  # room to skip the rows of endpoints at their share
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=row)
    cap = per_endpoint or limit
    held = _held(session, now)
    taken: list[int] = []
    for delivery_id, endpoint_id in session.execute(query).all():
        if len(taken) >= limit or held.get(endpoint_id, 0) >= cap:
            continue
        result = session.execute(
            update(row)
            .where(row.id == delivery_id, row.status == "pending", free)
            .values(claimed_until=now + policy.lease, claimed_by=owner)
        )
        if result.rowcount:  # type: ignore[attr-defined]  # DML returns a CursorResult
            taken.append(delivery_id)
            held[endpoint_id] = held.get(endpoint_id, 0) + 1
    session.commit()
    if not taken:
        return []
    rows = session.execute(
        select(row.id, row.event_id, row.payload, WebhookEndpoint.url, WebhookEndpoint.secret)
        .join(WebhookEndpoint, WebhookEndpoint.id == row.endpoint_id)
        .where(row.id.in_(taken))
        .order_by(row.id)
    ).all()
    return [Claimed(r.id, r.event_id, r.url, r.secret, r.payload) for r in rows]


def record_attempt(
    session: Session,
    delivery_id: int,
    owner: str,
    attempt: Attempt,
    now: datetime,
    policy: RetryPolicy,
) -> str | None:
    """Store the attempt's outcome; the delivery's new status (None if the claim was lost)."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.claimed_by != owner or row.status != "pending":
        return None
    row.attempts += 1
    row.last_status_code = attempt.status_code
    row.claimed_until = None
    if attempt.ok:
        row.status, row.delivered_at, row.last_error = "delivered", now, None
    else:
        row.last_error = (attempt.error or "failed")[:500]
        retry_at = now + timedelta(seconds=policy.delay(row.attempts))
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        if retry_at > created + policy.window:
            row.status = "failed"
        else:
            row.next_attempt_at = retry_at
    session.commit()
    return row.status


def call_deliveries(session: Session, call_id: str) -> list[tuple[WebhookDelivery, str]]:
    """The call's deliveries (with their endpoint's URL), in enqueue order."""
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint.url)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.call_id == call_id)
        .order_by(WebhookDelivery.id)
    ).all()
    return [(delivery, url) for delivery, url in rows]


def notify_customer(
    session: Session, call: Call, previous: str, event: CallEvent, now: datetime
) -> None:
    """After a worker's ``event`` was applied to ``call``: ``call.status`` if the status changed,
    ``call.ended`` the first time an ending is applied (never twice for one call)."""
    session.refresh(call)
    on_status_change(session, call, previous, now=now)
    if event.type != "call.ended":
        return
    already = session.scalar(
        select(CallEventRecord.id).where(
            CallEventRecord.call_id == call.id,
            CallEventRecord.type == "call.ended",
            CallEventRecord.id != event.id,
        )
    )
    if already is None:
        on_call_ended(session, call, event, now=now)
