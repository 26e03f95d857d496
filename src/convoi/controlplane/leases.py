"""Call leases: a call the worker has gone silent about is ended ``failed`` / ``worker_lost``.

A running call reports at least every ``CONVOI_PROGRESS_INTERVAL`` (5 s by default) while active;
every event it sends renews its lease. When the whole worker dies nobody else will report the
call, so the control plane ends it itself: a call still ``active`` with no event for
``call_lease_seconds`` (60 s by default), or still ``initiated``/``ringing`` with none for
``call_start_lease_seconds`` (180 s: covers waiting for a worker and the longest ringing), is
ended ``failed`` / ``worker_lost`` (fault ``platform``) with its last reported duration and cost,
a ``call.ended`` event is stored for it (as if the worker had sent it), and its room is deleted so
nobody stays in a dead call.

The first terminal event wins (:mod:`convoi.controlplane.events`): a real ``call.ended`` that
arrives after the lease expired is stored but does not change the call.

:func:`expire_calls` does one sweep (pure database work, testable with a clock); :class:`LeaseKeeper`
runs it periodically in every API process and deletes the rooms. With several API processes on
one database only one sweeps at a time (a database lock, :data:`SWEEP_LOCK`): a call is ended,
reported and its room deleted once.

Resume instead of fail: before expiring, each sweep dispatches again the active calls silent for
``resume_after`` (``CONVOI_CALL_RESUME_AFTER_SECONDS``) whose callee is still in the room and whose
agent is not (:mod:`convoi.controlplane.checkpoints`); that renews their lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from convoi.controlplane import webhooks_outbox
from convoi.controlplane.checkpoints import (
    ResumableCall,
    RoomProbe,
    claim_resume,
    resumable_calls,
)
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.locks import try_exclusive
from convoi.controlplane.db.models import Call, CallCheckpoint, CallEventRecord
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.log import logger
from convoi.lifecycle import classify
from convoi.reporting.events import CallEvent, Cost

__all__ = ["SWEEP_LOCK", "ExpiredCall", "LeaseKeeper", "Leases", "expire_calls"]

_STARTING = ("initiated", "ringing")
SWEEP_LOCK = "convoi.lease_sweep"
"""The lock one API process holds while it sweeps (several processes share one database)."""


@dataclass(frozen=True)
class Leases:
    """How long a call may go without an event before it is taken for lost (seconds)."""

    active: float = 60.0
    """For an ``active`` call (which reports progress every few seconds)."""
    starting: float = 180.0
    """For an ``initiated`` or ``ringing`` call (waiting for a worker, then ringing)."""
    resume_after: float | None = None
    """An ``active`` call silent this long is dispatched again if it can be (None: never)."""
    max_resumes: int = 2
    """Times one call may be dispatched again."""


@dataclass(frozen=True)
class ExpiredCall:
    """A call :func:`expire_calls` ended."""

    call_id: str
    room_id: str | None
    silent_seconds: float


def expire_calls(session: Session, now: datetime, leases: Leases) -> list[ExpiredCall]:
    """End every call whose lease ran out at ``now``; return them (their rooms still exist).

    One API process at a time sweeps (:func:`~convoi.controlplane.db.locks.try_exclusive`):
    while another holds the sweep, this returns ``[]`` and leaves the calls to it.
    """
    if not try_exclusive(session, SWEEP_LOCK):
        session.rollback()
        return []
    active_cutoff = now - timedelta(seconds=leases.active)
    starting_cutoff = now - timedelta(seconds=leases.starting)
    stale = session.scalars(
        select(Call).where(
            or_(
                (Call.status == "active") & (Call.updated_at < active_cutoff),
                Call.status.in_(_STARTING) & (Call.updated_at < starting_cutoff),
            )
        )
    ).all()
    expired: list[ExpiredCall] = []
    for call in stale:
        silent = (now - _aware(call.updated_at)).total_seconds()
        lease = leases.active if call.status == "active" else leases.starting
        _end_lost(session, call, now, silent, lease)
        expired.append(ExpiredCall(call.id, call.room_id, silent))
    session.commit()
    return expired


def _end_lost(session: Session, call: Call, now: datetime, silent: float, lease: float) -> None:
    status, fault = classify("worker_lost")
    detail = (
        f"no event from the worker for {silent:.0f} s (lease {lease:.0f} s while "
        f"{call.status}): the worker running the call was lost"
    )
    event = CallEvent(
        id=f"evt_{uuid.uuid4().hex}",
        call_id=call.id,
        sequence=call.last_event_sequence + 1,
        type="call.ended",
        created_at=now.timestamp(),
        status=status,
        ended_reason="worker_lost",
        fault=fault,
        detail=detail,
        duration_seconds=call.duration_seconds,
        cost=Cost(amount=Decimal(call.cost_amount)),
        metadata=call.call_metadata,
    )
    session.add(
        CallEventRecord(
            id=event.id,
            call_id=call.id,
            sequence=event.sequence,
            type=event.type,
            status=event.status,
            received_at=now,
            body=event.model_dump_json(),
            duplicates=0,
        )
    )
    previous = call.status
    call.status, call.ended_reason, call.fault, call.detail = status, "worker_lost", fault, detail
    call.last_event_sequence = event.sequence
    call.updated_at = now
    checkpoint = session.get(CallCheckpoint, call.id)
    if checkpoint is not None:  # customer speech: not kept past the call
        session.delete(checkpoint)
    webhooks_outbox.on_status_change(session, call, previous, now=now)
    webhooks_outbox.on_call_ended(session, call, event, now=now)
    logger.warning(
        "call lost: no event from its worker within its lease",
        extra={"call_id": call.id, "silent_seconds": round(silent, 1), "lease_seconds": lease},
    )


def _aware(moment: datetime) -> datetime:
    """SQLite hands naive datetimes back; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class LeaseKeeper:
    """Sweeps the calls every ``interval`` seconds and deletes the rooms of lost calls."""

    def __init__(
        self,
        database: Database,
        gateway: LiveKitGateway,
        leases: Leases,
        *,
        interval: float | None = None,
        agent_name: str = "convoi",
    ) -> None:
        self._agent_name = agent_name
        """The worker name resumed calls are dispatched to."""
        self._database = database
        self._gateway = gateway
        self._leases = leases
        shortest = min(leases.active, leases.starting, leases.resume_after or leases.active)
        self._interval = interval or max(1.0, shortest / 6)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="convoi-call-leases")

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> list[ExpiredCall]:
        """One sweep now: resume the silent calls that can be, end the lost ones, delete their
        rooms."""
        await self.resume_silent()
        expired = await asyncio.to_thread(self._expire)
        for call in expired:
            if call.room_id:
                try:
                    await asyncio.to_thread(self._gateway.delete_room, call.room_id)
                except Exception as exc:  # the room may be gone already; the call is ended anyway
                    logger.info(
                        "could not delete the room of a lost call: %s",
                        type(exc).__name__,
                        extra={"call_id": call.call_id, "room": call.room_id},
                    )
        return expired

    async def resume_silent(self) -> list[str]:
        """Dispatch again the silent active calls whose callee waits alone; their ids."""
        leases, probe = self._leases, self._gateway
        if leases.resume_after is None or not isinstance(probe, RoomProbe):
            return []
        resumed: list[str] = []
        for call in await asyncio.to_thread(self._resumable, leases.resume_after):
            try:
                callee, agent = await asyncio.to_thread(probe.room_occupants, call.room_id)
                if not callee or agent:
                    continue  # the caller left (the lease ends it), or its agent is still there
                await asyncio.to_thread(self._redispatch, call)
            except Exception as exc:  # LiveKit unreachable: try again next sweep (or expire)
                logger.warning(
                    "could not resume a silent call: %s",
                    type(exc).__name__,
                    extra={"call_id": call.call_id},
                )
                continue
            resumed.append(call.call_id)
        return resumed

    def _resumable(self, silent_for: float) -> list[ResumableCall]:
        with self._database.session() as session:
            return resumable_calls(
                session,
                datetime.now(UTC),
                silent_for=silent_for,
                max_resumes=self._leases.max_resumes,
            )

    def _redispatch(self, call: ResumableCall) -> None:
        with self._database.session() as session:
            if not claim_resume(session, call.call_id, call.attempt, datetime.now(UTC)):
                return  # another API process took this attempt
        self._gateway.dispatch(call.room_id, self._agent_name, call.metadata)
        logger.warning(
            "call silent with its caller waiting alone: dispatched it again",
            extra={"call_id": call.call_id, "room": call.room_id, "attempt": call.attempt},
        )

    def _expire(self) -> list[ExpiredCall]:
        with self._database.session() as session:
            return expire_calls(session, datetime.now(UTC), self._leases)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("call lease sweep failed; trying again")
            await asyncio.sleep(self._interval)  # the sweep period itself
