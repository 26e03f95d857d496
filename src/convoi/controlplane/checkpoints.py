"""Checkpoints in the control plane: the latest per active call, and resuming a silent call.

Each ``call.progress`` a worker sends carries the call's checkpoint
(:mod:`convoi.reporting.checkpoint`). :func:`store_checkpoint` keeps the newest one per call in
``call_checkpoints`` (the event itself is stored without it: ``call_events`` keeps no copy of each
checkpoint) and deletes it when the call ends (it holds customer speech).

When a whole worker dies, nobody reports its calls. Before the lease ends such a call ``failed``
/ ``worker_lost`` (:mod:`convoi.controlplane.leases`), :func:`resumable_calls` finds the active
calls silent for ``CONVOI_CALL_RESUME_AFTER_SECONDS`` that have a checkpoint and were resumed
fewer than ``CONVOI_MAX_RESUMES`` times; the lease keeper asks LiveKit whether the callee is still
in the room and the call's agent is not (:class:`RoomProbe`), and if so dispatches the agent again
with the checkpoint (any worker of the agent name takes it: :mod:`convoi.worker.resume`) and
renews the lease (:func:`claim_resume`, one process per attempt). A call whose agent is still in the room is left to its
lease: its worker may only be slow, and two agents must never talk to one caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import Call, CallCheckpoint
from convoi.lifecycle import TERMINAL_STATUSES
from convoi.reporting.checkpoint import Resume, with_resume
from convoi.reporting.events import CallEvent, Checkpoint

__all__ = [
    "ResumableCall",
    "RoomProbe",
    "claim_resume",
    "resumable_calls",
    "store_checkpoint",
    "stored_body",
]


@runtime_checkable
class RoomProbe(Protocol):
    """Who is in a call's room (the LiveKit gateway, when it can tell)."""

    def room_occupants(self, room: str) -> tuple[bool, bool]:
        """``(callee, agent)``: whether a non-agent participant (SIP callee, browser) and whether
        an agent participant are in ``room`` (both False when the room is gone)."""
        ...


@dataclass(frozen=True)
class ResumableCall:
    """An active call gone silent that may be dispatched again."""

    call_id: str
    room_id: str
    metadata: str
    """The dispatch metadata that resumes it (CallSpec + resume)."""
    attempt: int


def stored_body(event: CallEvent, body: str) -> str:
    """The body ``call_events`` keeps: without the checkpoint (kept apart, latest only)."""
    if event.checkpoint is None:
        return body
    return event.model_copy(update={"checkpoint": None}).model_dump_json()


def store_checkpoint(session: Session, event: CallEvent, now: datetime) -> None:
    """Keep ``event``'s checkpoint if it is the call's newest; forget it when the call ended."""
    if event.status in TERMINAL_STATUSES:
        session.execute(delete(CallCheckpoint).where(CallCheckpoint.call_id == event.call_id))
        return
    if event.checkpoint is None:
        return
    row = session.get(CallCheckpoint, event.call_id)
    body = event.checkpoint.model_dump_json()
    if row is None:
        session.add(
            CallCheckpoint(
                call_id=event.call_id,
                sequence=event.sequence,
                body=body,
                resumes=event.checkpoint.resumes,
                updated_at=now,
            )
        )
    elif row.sequence < event.sequence:
        row.sequence, row.body, row.updated_at = event.sequence, body, now
        row.resumes = max(row.resumes, event.checkpoint.resumes)


def resumable_calls(
    session: Session, now: datetime, *, silent_for: float, max_resumes: int
) -> list[ResumableCall]:
    """Active calls with a checkpoint, silent for ``silent_for`` s, resumed < ``max_resumes``."""
    cutoff = now - timedelta(seconds=silent_for)
    rows = session.execute(
        select(Call, CallCheckpoint)
        .join(CallCheckpoint, CallCheckpoint.call_id == Call.id)
        .where(
            Call.status == "active",
            Call.updated_at < cutoff,
            Call.room_id.is_not(None),
            CallCheckpoint.resumes < max_resumes,
        )
    ).all()
    found: list[ResumableCall] = []
    for call, row in rows:
        attempt = row.resumes + 1
        checkpoint = Checkpoint.model_validate_json(row.body).model_copy(
            update={"resumes": attempt}
        )
        resume = Resume(attempt=attempt, sequence=call.last_event_sequence, checkpoint=checkpoint)
        metadata = with_resume(call.callspec, resume)
        found.append(ResumableCall(call.id, call.room_id or "", metadata, attempt))
    return found


def claim_resume(session: Session, call_id: str, attempt: int, now: datetime) -> bool:
    """Take resume ``attempt`` of the call before dispatching it: True for exactly one caller
    however many API processes sweep at once (a conditional update of the resume count), which
    also renews the call's lease."""
    claimed = session.execute(
        update(CallCheckpoint)
        .where(CallCheckpoint.call_id == call_id, CallCheckpoint.resumes < attempt)
        .values(resumes=attempt, updated_at=now)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]  # a CursorResult (DML)
        session.rollback()
        return False
    session.execute(update(Call).where(Call.id == call_id).values(updated_at=now))
    session.commit()
    return True
