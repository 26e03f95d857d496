"""The per-call reporter: lifecycle transitions → signed, durable call events.

One :class:`CallReporter` per call. Every status transition emits ``call.status``; while the call is
active ``call.progress`` goes out every ``progress_interval`` seconds with the duration and cost so
far; the terminal transition emits ``call.status`` and then ``call.ended`` with the transcript,
handoffs, usage, cost breakdown and per-turn latency. Events are committed to the outbox (a quick
local SQLite write, run off the event loop) and sent by the delivery loop, so reporting never
blocks the audio path.
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
    Cost,
    EndedReason,
    EventType,
    Fault,
    Handoff,
    TranscriptEntry,
    TurnLatency,
    UsageEntry,
)

__all__ = ["CallReporter", "EventStore"]

logger = logging.getLogger("convoi.reporting")


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
            now = self._clock()
            life = self.lifecycle
            duration = round(life.duration_seconds(now), 3)
            usage = list(self._usage())
            sequence = await asyncio.to_thread(self._store.next_sequence, self.call_id)
            event = CallEvent(
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
                cost=self.cost(usage, duration),
                usage=usage,
                metadata=self._metadata,
                **extra,
            )
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

    async def active(self, progress_interval: float | None = None) -> CallEvent:
        """The call is connected: duration counts from now; progress events start."""
        self.lifecycle.activate(self._clock())
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
    ) -> CallEvent | None:
        """Terminal transition: ``call.status`` then ``call.ended``. No-op if already ended.

        ``at`` is when the call really ended (e.g. the moment the caller hung up), if earlier
        than now; duration and cost count up to it."""
        if self.lifecycle.is_terminal:
            return None
        if self._progress_task is not None:
            self._progress_task.cancel()
        default_status, default_fault = classify(reason)
        status = status or default_status
        if status == "completed" and not self.lifecycle.can("completed"):
            status = "failed"  # e.g. the caller left before the call became active
        self.lifecycle.end(reason, at or self._clock(), status=status, fault=fault or default_fault)
        await self._emit("call.status", detail=detail)
        return await self._emit(
            "call.ended",
            detail=detail,
            transcript=list(transcript),
            handoffs=list(handoffs),
            latency=list(latency),
        )
