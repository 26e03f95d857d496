"""Outbound phone calls in a job: ring the customer, pre-render the greeting, map dial outcomes.

The SIP leg itself lives in :mod:`convoi.telephony`; this module is the job's side of it: report
``ringing``, start synthesising the greeting while the phone rings, dial with the dialer for
``CONVOI_DIAL_MODE``, and on a failure report the outcome (busy, no answer, failed) and end the job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from livekit.agents import JobContext

from convoi.callspec import ResolvedCall
from convoi.reporting.reporter import CallReporter
from convoi.settings import WorkerSettings
from convoi.telephony import TrunkConfigError, dialer_for, phone_identity
from convoi.worker.agent import presynthesize
from convoi.worker.log import logger

__all__ = ["GREETING_GRACE_SECONDS", "dial_customer"]

GREETING_GRACE_SECONDS = 2.0
"""How long an answered call waits for a greeting still being rendered before speaking it live."""


def _presynthesize_greeting(
    call: ResolvedCall, tts: Any, state: Any
) -> asyncio.Task[list[rtc.AudioFrame]] | None:
    """Start rendering the start member's greeting so it plays the moment the phone is answered."""
    text = call.start_agent.greeting
    if not text or tts is None:
        return None
    return asyncio.create_task(presynthesize(tts, text), name="convoi-greeting-tts")


async def _collect_greeting(
    task: asyncio.Task[list[rtc.AudioFrame]] | None, state: Any, fields: dict[str, Any]
) -> None:
    """Take the pre-rendered greeting if it is ready (or nearly: 2 s); else it is spoken live."""
    if task is None:
        return
    try:
        frames = await asyncio.wait_for(asyncio.shield(task), timeout=GREETING_GRACE_SECONDS)
    except TimeoutError:
        task.cancel()
        logger.warning("greeting not pre-rendered in time; speaking it live", extra=fields)
        return
    except Exception as exc:  # the live path will report provider errors properly
        logger.warning("could not pre-render the greeting: %s", exc, extra=fields)
        return
    state.greeting_audio = frames
    member = state.call.start
    text = state.call.start_agent.greeting or ""
    state.extra_tts_characters[member] = state.extra_tts_characters.get(member, 0) + len(text)


async def dial_customer(
    ctx: JobContext,
    call: ResolvedCall,
    reporter: CallReporter,
    state: Any,
    fields: dict[str, Any],
    agent_tts: Any = None,
) -> str | None:
    """Ring the customer; the SIP participant's identity once answered, else None (the call was
    reported as busy / no_answer / failed and the job is shutting down)."""
    settings: WorkerSettings = ctx.proc.userdata["settings"]
    spec = call.spec
    assert spec.customer is not None and call.phone_number is not None
    limits = call.start_agent.agent.limits
    identity = phone_identity(spec.customer.number)
    await reporter.ringing()
    greeting = _presynthesize_greeting(call, agent_tts, state)
    try:
        result = await dialer_for(settings.dial_mode)(
            ctx.api,
            phone=call.phone_number,
            to_number=spec.customer.number,
            room=ctx.room.name,
            identity=identity,
            display_name=spec.customer.name,
            ringing_timeout=float(limits.ringing_timeout_seconds),
            max_call_duration=float(limits.max_duration_seconds),
        )
    except TrunkConfigError as exc:
        outcome = exc.outcome
    else:
        if result.answered:
            logger.info("call answered", extra={**fields, "participant": identity})
            await _collect_greeting(greeting, state, fields)
            return identity
        assert result.outcome is not None
        outcome = result.outcome
    if greeting is not None:
        greeting.cancel()
    logger.info(
        "call not answered",
        extra={
            **fields,
            "status": outcome.status,
            "reason": outcome.ended_reason,
            "detail": outcome.detail,
        },
    )
    await reporter.end(
        outcome.ended_reason, status=outcome.status, fault=outcome.fault, detail=outcome.detail
    )
    state.ended_reason = outcome.ended_reason
    ctx.delete_room()
    ctx.shutdown(reason=outcome.ended_reason)
    return None
