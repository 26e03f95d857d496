"""Outbound phone calls in a job: ring the customer while the greeting renders, return the answer
or the dial outcome.

The SIP leg itself lives in :mod:`convoi.telephony`; this module is the job's side of it: dial with
the worker's dialer (LiveKit SIP) and synthesise the start member's greeting while the phone
rings, so it plays the moment the call is answered. It decides nothing about the call's end: an
unanswered dial comes back as its :class:`~convoi.telephony.DialOutcome`, which the call ends
with (:meth:`convoi.worker.call.Call.end`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from livekit import api, rtc
from livekit.agents import tts

from convoi.callspec import ResolvedCall
from convoi.telephony import Dialer, DialOutcome, TrunkConfigError, phone_identity
from convoi.worker.greeting_audio import GREETING_GRACE_SECONDS, GreetingRender
from convoi.worker.log import logger

__all__ = ["BRIDGE_DURATION_GRACE_SECONDS", "GREETING_GRACE_SECONDS", "Answered", "dial_customer"]

BRIDGE_DURATION_GRACE_SECONDS = 60.0
"""livekit-sip hangs up ``max_duration_seconds`` plus this after the answer, should the worker not."""


@dataclass(frozen=True)
class Answered:
    """The customer picked up."""

    identity: str
    """The phone participant's identity in the room."""
    greeting_audio: AsyncIterator[rtc.AudioFrame] | None
    """The start member's greeting, rendering since the phone rang (None: it is spoken live)."""
    greeting_characters: int
    """Characters synthesised for :attr:`greeting_audio` (billed as TTS of the start member)."""
    answered_at: float | None = None
    """Unix time of the answer, as the dialer reported it."""


async def dial_customer(
    lkapi: api.LiveKitAPI,
    call: ResolvedCall,
    *,
    room: str,
    dialer: Dialer,
    greeting_tts: tts.TTS[Any] | None,
    log_fields: Mapping[str, Any],
) -> Answered | DialOutcome:
    """Ring ``call``'s customer from its phone number into ``room``: the answer, or why not."""
    spec = call.spec
    assert spec.customer is not None and call.phone_number is not None  # resolve_call checks
    limits = call.start_agent.agent.limits
    identity = phone_identity(spec.customer.number)
    greeting = GreetingRender(greeting_tts, call.start_agent.greeting)
    try:
        result = await dialer(
            lkapi,
            phone=call.phone_number,
            to_number=spec.customer.number,
            room=room,
            identity=identity,
            display_name=spec.customer.name,
            ringing_timeout=float(limits.ringing_timeout_seconds),
            # the call ends itself at max_duration (wrap-up said); the bridge's cut-off is a net
            max_call_duration=float(limits.max_duration_seconds) + BRIDGE_DURATION_GRACE_SECONDS,
        )
    except TrunkConfigError as exc:
        outcome: DialOutcome = exc.outcome
    else:
        if result.answered:
            logger.info("call answered", extra={**log_fields, "participant": identity})
            frames = await greeting.collect(log_fields)
            return Answered(
                identity,
                frames,
                len(greeting.text) if frames else 0,
                answered_at=result.answered_at,
            )
        assert result.outcome is not None
        outcome = result.outcome
    greeting.cancel()
    logger.info(
        "call not answered",
        extra={
            **log_fields,
            "status": outcome.status,
            "reason": outcome.ended_reason,
            "detail": outcome.detail,
        },
    )
    return outcome
