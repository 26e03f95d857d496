"""Ending a call whose job process died before it could end the call itself.

The call's job process owns its report (:class:`convoi.worker.call.Call`); when that process dies
(``kill -9``, out of memory, a native crash) nothing in it runs any more. The worker's main process
sees the exit and calls :func:`end_orphaned_call` with the call id from the job's dispatch
metadata: if the call's newest event in the outbox is not terminal, it commits ``call.status`` and
``call.ended`` as ``failed`` / ``worker_error`` (fault ``platform``), with the duration running up
to the death (an active call was live until then) and the cost as of the last progress event
(the usage after it died with the process; ``detail`` says so). A call that had already ended is
left alone, so a job that exits normally after reporting costs nothing here.

Before ending it, the main process may resume the call instead (:func:`resumable`: it was active
and its newest event carries a checkpoint, and it has been resumed fewer than
``CONVOI_MAX_RESUMES`` times; then, if the callee is still in the room, it is dispatched again:
:mod:`convoi.worker.supervision`).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Protocol

from convoi.lifecycle import TERMINAL_STATUSES, classify
from convoi.reporting.checkpoint import Resume
from convoi.reporting.events import CallEvent, Cost

__all__ = ["OrphanStore", "end_orphaned_call", "resumable"]


class OrphanStore(Protocol):
    """The outbox as :func:`end_orphaned_call` uses it."""

    def latest(self, call_id: str) -> CallEvent | None: ...

    def next_sequence(self, call_id: str) -> int: ...

    def add(self, event: CallEvent) -> None: ...


def end_orphaned_call(
    store: OrphanStore,
    call_id: str,
    *,
    why: str,
    now: float,
    metadata: dict[str, Any] | None = None,
) -> CallEvent | None:
    """Commit the end of ``call_id`` if its newest event is not terminal; the ``call.ended``
    committed (None when the call had ended already). ``why`` says how the job died (it goes in
    ``detail``); ``metadata`` is the CallSpec's, for a call that never reported anything."""
    last = store.latest(call_id)
    if last is not None and last.status in TERMINAL_STATUSES:
        return None
    status, fault = classify("worker_error")
    duration = 0.0
    cost = Cost(amount=Decimal(0))
    note = "nothing had been reported"
    if last is not None:
        metadata = last.metadata
        cost = last.cost
        duration = last.duration_seconds
        if last.status == "active":  # live until the process died
            duration = round(last.duration_seconds + max(0.0, now - last.created_at), 3)
        note = "duration up to the job's death; cost as of the last progress event"
    common: dict[str, Any] = {
        "call_id": call_id,
        "created_at": now,
        "status": status,
        "ended_reason": "worker_error",
        "fault": fault,
        "detail": f"{why} ({note})",
        "duration_seconds": duration,
        "cost": cost,
        "usage": list(last.usage) if last is not None else [],
        "metadata": metadata,
    }
    for type_ in ("call.status", "call.ended"):
        event = CallEvent(
            id=f"evt_{uuid.uuid4().hex}",
            sequence=store.next_sequence(call_id),
            type=type_,
            **common,
        )
        store.add(event)
    return event


def resumable(last: CallEvent | None, *, attempts: int, max_resumes: int) -> Resume | None:
    """The resume of a call whose job died, given its newest event ``last`` and how many times it
    was resumed already (``attempts``); None when it cannot be resumed (not active, no checkpoint,
    or resumed ``max_resumes`` times already)."""
    if last is None or last.status != "active" or last.checkpoint is None:
        return None
    if attempts >= max_resumes:
        return None
    attempt = attempts + 1
    checkpoint = last.checkpoint.model_copy(update={"resumes": attempt})
    return Resume(attempt=attempt, sequence=last.sequence, checkpoint=checkpoint)
