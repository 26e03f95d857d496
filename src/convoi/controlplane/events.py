"""Signed call events from the worker (docs/architecture.md §8), stored in the control plane's own database.

The HTTP handling is the reference receiver's :func:`convoi.receiver.ingest_event` (signature
over the raw body → 401, :class:`~convoi.reporting.events.CallEvent` validation → 422, path/body
call id and ``Convoi-Event-Id`` checks → 422, then ``store.record``); :class:`SqlEventStore` is the
store it records into. Each distinct event id is kept in ``call_events`` (a repeat answers
"duplicate" and changes nothing); the call's state (status, ended_reason, duration, cost,
metadata, updated_at) follows the event with the highest ``sequence`` seen: an older event that
arrives late is stored but never overwrites newer state. The first terminal event wins: after it,
only events of the same ending (status and ended_reason) apply. A ``call.progress`` checkpoint is
kept apart, latest only (:mod:`convoi.controlplane.checkpoints`). An applied event that changes
the status, or ends the call, enqueues the customer's webhooks in the same transaction
(:func:`convoi.controlplane.webhooks_outbox.notify_customer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from convoi.controlplane.checkpoints import store_checkpoint, stored_body
from convoi.controlplane.db.models import Call, CallEventRecord, utcnow
from convoi.controlplane.errors import NotFound
from convoi.controlplane.webhooks_outbox import notify_customer
from convoi.lifecycle import TERMINAL_STATUSES
from convoi.receiver import IngestResult, RecordOutcome, ingest_event
from convoi.reporting.events import CallEvent

if TYPE_CHECKING:
    from convoi.receiver import ReceiverStore

__all__ = ["SqlEventStore", "ingest"]


class SqlEventStore:
    """What :func:`~convoi.receiver.ingest_event` records into, on a SQLAlchemy session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, event: CallEvent, body: str) -> RecordOutcome:
        """Store ``event`` unless its id is known, and apply it to the call if it is the newest.

        Raises :class:`NotFound` for a call this control plane never created.
        """
        session = self.session
        call = session.get(Call, event.call_id)
        if call is None:
            raise NotFound(
                f"no call {event.call_id!r}: events are accepted for calls created here",
                field="call_id",
                code="call_not_found",
            )
        if self._bump_duplicate(event.id):
            return "duplicate"
        previous = call.status
        now = utcnow()
        session.add(
            CallEventRecord(
                id=event.id,
                call_id=event.call_id,
                sequence=event.sequence,
                type=event.type,
                status=event.status,
                received_at=now,
                body=stored_body(event, body),  # the checkpoint is kept apart (latest only)
                duplicates=0,
            )
        )
        try:
            session.flush()
        except IntegrityError:  # the same id, stored concurrently
            session.rollback()
            self._bump_duplicate(event.id)
            return "duplicate"
        values: dict[str, object] = {
            "last_event_sequence": event.sequence,
            "status": event.status,
            "ended_reason": event.ended_reason,
            "fault": event.fault,
            "detail": event.detail,
            "duration_seconds": event.duration_seconds,
            "cost_amount": event.cost.model_dump(mode="json")["amount"],
            "cost_currency": event.cost.currency,
            "updated_at": now,
        }
        if event.metadata is not None:
            values["call_metadata"] = event.metadata
        for outcome in ("transfer", "voicemail"):
            report = getattr(event, outcome)
            if report is not None:
                values[outcome] = report.model_dump(mode="json")
        applied = session.execute(
            update(Call)
            .where(
                Call.id == event.call_id,
                Call.last_event_sequence < event.sequence,
                # the first terminal event wins: once ended, only more of the same ending applies
                # (call.ended after call.status), never another one (a late event after the lease
                # expired, see convoi.controlplane.leases)
                Call.status.not_in(TERMINAL_STATUSES)
                | ((Call.status == event.status) & (Call.ended_reason == event.ended_reason)),
            )
            .values(**values)
        )
        if applied.rowcount:  # type: ignore[attr-defined]  # a CursorResult (DML)
            store_checkpoint(session, event, now)
            notify_customer(session, call, previous, event, now)
        session.commit()
        return "stored"

    def _bump_duplicate(self, event_id: str) -> bool:
        bumped = self.session.execute(
            update(CallEventRecord)
            .where(CallEventRecord.id == event_id)
            .values(duplicates=CallEventRecord.duplicates + 1)
        )
        if bumped.rowcount:  # type: ignore[attr-defined]  # DML returns a CursorResult; Session.execute says Result
            self.session.commit()
            return True
        return False


def ingest(
    session: Session,
    secrets: Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    call_id: str,
    *,
    now: float | None = None,
) -> IngestResult:
    """Verify, validate and store one event POSTed for ``call_id`` (see the module doc)."""
    store = cast("ReceiverStore", SqlEventStore(session))  # ingest_event only calls record()
    return ingest_event(store, secrets, headers, body, call_id, now=now)
