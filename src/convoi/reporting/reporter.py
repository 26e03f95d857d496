"""The per-call reporter: lifecycle transitions → signed, durable call events.

One :class:`CallReporter` per call. Every status transition emits ``call.status``; while the call is
active ``call.progress`` goes out every ``progress_interval`` seconds with the duration and cost so
far; the terminal transition emits ``call.status`` and then ``call.ended`` with the transcript,
handoffs, usage, cost breakdown and per-turn latency. Events are committed to the outbox (a quick
local SQLite write, run off the event loop) and sent by the delivery loop, so reporting never
blocks the audio path.

The final event is never lost to a reporting fault: if the usage, the cost or the transcript
cannot be put into it, ``call.ended`` still goes out without them (``detail`` says what is
missing), and a failing outbox write is retried before giving up loudly.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from convoi.definitions.prices import PriceList
from convoi.lifecycle import CallLifecycle, TerminalStatus, classify
from convoi.reporting.cost import price_call
from convoi.reporting.events import (
    CallEvent,
    Checkpoint,
    Cost,
    EndedReason,
    EventType,
    Fault,
    Handoff,
    TranscriptEntry,
    TransferReport,
    TurnLatency,
    UsageEntry,
    VoicemailReport,
)

__all__ = ["FINAL_EVENT_ATTEMPTS", "CallReporter", "EventStore", "ReportingError"]

logger = logging.getLogger("convoi.reporting")

FINAL_EVENT_ATTEMPTS = 4
"""Tries at committing ``call.ended`` to the outbox before giving up."""
FINAL_EVENT_RETRY_SECONDS = 0.5
"""Back-off step between outbox write attempts of the final event (0.5 s, 1 s, …)."""


class ReportingError(RuntimeError):
    """The final event of a call could not be committed to the outbox at all."""


class EventStore(Protocol):
    """Where events are committed before delivery (the outbox)."""

    def next_sequence(self, call_id: str) -> int: ...

    def add(self, event: CallEvent) -> None: ...


class CallReporter:
    """Reports one call's lifecycle, duration and cost as call events."""

    def __init__(
        self,
        call_id: str,
        *,
        phone: bool,
        store: EventStore,
        prices: PriceList | None,
        metadata: dict[str, Any] | None = None,
        usage: Callable[[], Sequence[UsageEntry]] = list,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[CallEvent], None] | None = None,
        checkpoint: Callable[[], Checkpoint | None] | None = None,
    ) -> None:
        self.call_id = call_id
        self.lifecycle = CallLifecycle(phone=phone, initiated_at=clock())
        self._store = store
        self._prices = prices
        self._metadata = metadata
        self._usage = usage
        self._clock = clock
        self._on_event = on_event
        self._lock = asyncio.Lock()
        self._progress_task: asyncio.Task[None] | None = None
        self._checkpoint = checkpoint
        self._resumed_started_at: float | None = None

    # -- cost and events -------------------------------------------------------------------

    def cost(self, usage: Sequence[UsageEntry], duration: float) -> Cost:
        """Cost so far; zero (and no breakdown) when there is no price list."""
        if self._prices is None:
            return Cost(amount=Decimal(0))
        return price_call(
            usage, self._prices, duration_seconds=duration, telephony=self.lifecycle.phone
        )

    async def _emit(
        self, type_: EventType, *, detail: str | None = None, **extra: Any
    ) -> CallEvent:
        async with self._lock:  # one sequence number per event, in order
            sequence = await asyncio.to_thread(self._store.next_sequence, self.call_id)
            try:
                event = self._build(type_, sequence, detail=detail, **extra)
            except Exception:
                logger.exception(
                    "could not compute usage and cost for a %s event; reporting it without them",
                    type_,
                    extra=self._fields,
                )
                event = self._build(type_, sequence, detail=_degraded(detail), bare=True, **extra)
            return await self._commit(event)

    def _build(
        self,
        type_: EventType,
        sequence: int,
        *,
        detail: str | None,
        bare: bool = False,
        **extra: Any,
    ) -> CallEvent:
        """The event now; ``bare`` leaves out usage and cost (they may be what failed)."""
        now = self._clock()
        life = self.lifecycle
        duration = round(life.duration_seconds(now), 3)
        usage = [] if bare else list(self._usage())
        if type_ == "call.progress" and not bare and self._checkpoint is not None:
            extra.setdefault("checkpoint", self._checkpoint())
        return CallEvent(
            id=f"evt_{uuid.uuid4().hex}",
            call_id=self.call_id,
            sequence=sequence,
            type=type_,
            created_at=now,
            status=life.status,
            ended_reason=life.ended_reason,
            fault=life.fault,
            detail=detail,
            duration_seconds=duration,
            cost=Cost(amount=Decimal(0)) if bare else self.cost(usage, duration),
            usage=usage,
            metadata=self._metadata,
            **extra,
        )

    async def _commit(self, event: CallEvent) -> CallEvent:
        await asyncio.to_thread(self._store.add, event)  # durable before anything is sent
        if self._on_event is not None:
            self._on_event(event)
        return event

    # -- transitions -----------------------------------------------------------------------

    async def initiated(self) -> CallEvent:
        """The worker has the call (first event)."""
        return await self._emit("call.status")

    async def ringing(self) -> CallEvent:
        """A phone call is dialling."""
        self.lifecycle.ringing(self._clock())
        return await self._emit("call.status")

    def resume_from(self, initiated_at: float, started_at: float) -> None:
        """This job resumes a call another job conducted (:mod:`convoi.worker.resume`): the
        lifecycle starts where it was (initiated, ringing for a phone call) and :meth:`active`
        activates it as of ``started_at``, reporting ``call.progress`` (the control plane has the
        call active already)."""
        self.lifecycle = CallLifecycle(phone=self.lifecycle.phone, initiated_at=initiated_at)
        if self.lifecycle.phone:
            self.lifecycle.ringing(initiated_at)
        self._resumed_started_at = started_at

    async def progress(self) -> CallEvent | None:
        """A ``call.progress`` now (with the checkpoint), if the call is active."""
        if self.lifecycle.status != "active":
            return None
        return await self._emit("call.progress")

    async def active(self, progress_interval: float | None = None) -> CallEvent:
        """The call is connected: duration counts from now; progress events start."""
        resumed = self._resumed_started_at
        self.lifecycle.activate(resumed if resumed is not None else self._clock())
        if resumed is not None:
            event = await self._emit("call.progress", detail="resumed")
        else:
            event = await self._emit("call.status")
        if progress_interval:
            self._progress_task = asyncio.create_task(self._progress_loop(progress_interval))
        return event

    async def _progress_loop(self, interval: float) -> None:
        while not self.lifecycle.is_terminal:
            await asyncio.sleep(interval)  # the progress period itself, not synchronisation
            if self.lifecycle.is_terminal:
                return
            try:
                await self._emit("call.progress")
            except Exception:
                logger.exception(
                    "could not record a progress event", extra={"call_id": self.call_id}
                )

    async def end(
        self,
        reason: EndedReason,
        *,
        detail: str | None = None,
        fault: Fault | None = None,
        transcript: Sequence[TranscriptEntry] = (),
        handoffs: Sequence[Handoff] = (),
        latency: Sequence[TurnLatency] = (),
        at: float | None = None,
        status: TerminalStatus | None = None,
        transfer: TransferReport | None = None,
        voicemail: VoicemailReport | None = None,
    ) -> CallEvent | None:
        """Terminal transition: ``call.status`` then ``call.ended``. No-op if already ended.

        ``transfer`` and ``voicemail`` (what became of a transfer, what answering-machine
        detection decided) go into ``call.ended`` even when the rest of it cannot be built.

        ``at`` is when the call really ended (e.g. the moment the caller hung up), if earlier
        than now; duration and cost count up to it. The status defaults to the reason's
        classification; ``completed`` for a call that never became active becomes ``failed``."""
        if self.lifecycle.is_terminal:
            return None
        if self._progress_task is not None:
            self._progress_task.cancel()
        default_status, default_fault = classify(reason)
        status = status or default_status
        if status == "completed" and not self.lifecycle.can("completed"):
            status = "failed"  # e.g. the caller left before the call became active
        self.lifecycle.end(reason, at or self._clock(), status=status, fault=fault or default_fault)
        try:
            await self._emit("call.status", detail=detail)
        except Exception:
            logger.exception("could not record the final status event", extra=self._fields)
        outcome = {"transfer": transfer, "voicemail": voicemail}
        return await self._emit_final(
            detail, list(transcript), list(handoffs), list(latency), outcome
        )

    async def _emit_final(
        self,
        detail: str | None,
        transcript: list[TranscriptEntry],
        handoffs: list[Handoff],
        latency: list[TurnLatency],
        outcome: dict[str, Any],
    ) -> CallEvent:
        """``call.ended``: in full, else without what could not be put in it; the outbox write is
        retried (:data:`FINAL_EVENT_ATTEMPTS`) before :class:`ReportingError`."""
        async with self._lock:
            last: Exception | None = None
            for attempt in range(1, FINAL_EVENT_ATTEMPTS + 1):
                try:
                    sequence = await asyncio.to_thread(self._store.next_sequence, self.call_id)
                    try:
                        event = self._build(
                            "call.ended",
                            sequence,
                            detail=detail,
                            transcript=transcript,
                            handoffs=handoffs,
                            latency=latency,
                            **outcome,
                        )
                    except Exception:
                        logger.exception(
                            "could not build the full final event; reporting it without usage, "
                            "cost and transcript",
                            extra=self._fields,
                        )
                        event = self._build(
                            "call.ended", sequence, detail=_degraded(detail), bare=True, **outcome
                        )
                    return await self._commit(event)
                except Exception as exc:
                    last = exc
                    logger.exception(
                        "could not record the final call event (attempt %d of %d)",
                        attempt,
                        FINAL_EVENT_ATTEMPTS,
                        extra=self._fields,
                    )
                    if attempt < FINAL_EVENT_ATTEMPTS:
                        await asyncio.sleep(FINAL_EVENT_RETRY_SECONDS * attempt)  # write back-off
        raise ReportingError(f"the final event of {self.call_id} could not be recorded") from last

    @property
    def _fields(self) -> dict[str, Any]:
        return {"call_id": self.call_id}


def _degraded(detail: str | None) -> str:
    note = "usage, cost and transcript could not be reported (see the worker log)"
    return f"{detail}; {note}" if detail else note
