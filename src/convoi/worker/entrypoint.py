"""The job entrypoint: one dispatched job = one call.

parse CallSpec → resolve → merge → build → join the room → greet → converse → end, reporting the
call's lifecycle as events (initiated → active → terminal) through the durable outbox. A job whose
CallSpec is invalid ends with a structured ``call rejected`` log line naming the field and a
``failed`` / ``invalid_request`` report; the worker process carries on serving other jobs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents import JobContext, JobProcess, room_io
from livekit.agents.voice.events import CloseEvent
from livekit.plugins import silero  # plugins register on import, which must be the main thread
from pydantic import TypeAdapter

from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.ids import CallId
from convoi.definitions.loader import load_definitions
from convoi.pipeline.factory import PipelineError
from convoi.reporting.channel import ReportingChannel
from convoi.reporting.delivery import DeliverySettings
from convoi.reporting.events import CallEvent
from convoi.reporting.reporter import CallReporter
from convoi.settings import WorkerSettings
from convoi.worker import metrics
from convoi.worker.log import logger
from convoi.worker.phone import dial_customer
from convoi.worker.recording import SessionRecorder
from convoi.worker.session import build_session

__all__ = ["PARTICIPANT_JOIN_TIMEOUT", "console_callspec", "entrypoint", "prewarm"]

PARTICIPANT_JOIN_TIMEOUT = 120.0
"""Seconds a web call waits for its browser participant before ending ``participant_never_joined``."""

_CALL_ID = TypeAdapter(CallId)


def prewarm(proc: JobProcess) -> None:
    """Once per job process: load silero's VAD, the definitions and the reporting settings."""
    settings = WorkerSettings()
    proc.userdata["settings"] = settings
    proc.userdata["definitions"] = load_definitions(settings.config_dir).definitions
    proc.userdata["delivery"] = DeliverySettings()
    proc.userdata["vad"] = silero.VAD.load()


def console_callspec(settings: WorkerSettings, defs: Any) -> str:
    """The CallSpec for ``convoi-worker console``: CONVOI_CONSOLE_CALL, else a web call to the
    first agent (console jobs carry no dispatch metadata)."""
    if settings.console_call is not None:
        return settings.console_call.read_text(encoding="utf-8")
    first = sorted(defs.agents)[0]
    return json.dumps({"call_id": "call_console0001", "type": "web", "agent_id": first})


def _peek(metadata: str) -> dict[str, Any]:
    """Best-effort top-level fields of a CallSpec, even an invalid one (to report on it)."""
    try:
        data = json.loads(metadata)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid_call_id(value: object) -> str | None:
    try:
        return _CALL_ID.validate_python(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _event_hook(channel: ReportingChannel) -> Callable[[CallEvent], None]:
    """After each committed event: wake the sender; count finished calls in the metrics."""

    def on_event(event: CallEvent) -> None:
        channel.on_event(event)
        if event.type == "call.ended":
            metrics.call_ended(
                event.status, event.ended_reason, event.cost.amount, len(event.handoffs or [])
            )

    return on_event


def _ensure_ready(proc: JobProcess) -> None:
    if "definitions" not in proc.userdata:  # setup hook not run (e.g. console mode)
        prewarm(proc)


async def entrypoint(ctx: JobContext) -> None:
    """Conduct the call described by ``ctx.job.metadata``."""
    _ensure_ready(ctx.proc)
    settings: WorkerSettings = ctx.proc.userdata["settings"]
    defs = ctx.proc.userdata["definitions"]
    metadata = ctx.job.metadata
    if ctx.is_fake_job() and not metadata.strip():
        metadata = console_callspec(settings, defs)
    peek = _peek(metadata)
    call_id = _valid_call_id(peek.get("call_id"))
    fields: dict[str, Any] = {"job_id": ctx.job.id, "room": ctx.room.name, "call_id": call_id}
    ctx.log_context_fields = fields
    channel = ReportingChannel(ctx.proc.userdata["delivery"])
    channel.start()

    try:
        call = resolve_call(metadata, defs)
        session, agent = build_session(call, settings, vad=ctx.proc.userdata["vad"])
    except (CallSpecError, PipelineError) as exc:
        await _reject(ctx, exc, peek, call_id, fields, channel, defs)
        return

    await _run_call(ctx, call, session, agent, fields, channel)


async def _reject(
    ctx: JobContext,
    exc: CallSpecError | PipelineError,
    peek: dict[str, Any],
    call_id: str | None,
    fields: dict[str, Any],
    channel: ReportingChannel,
    defs: Any,
) -> None:
    """End a call that cannot run: log it, report ``failed`` with the reason, free the job."""
    if isinstance(exc, CallSpecError):
        reason, where, problem = exc.reason, exc.field, exc.problem
        message = "call rejected: invalid CallSpec"
    else:
        reason, where, problem = "provider_error", None, str(exc)
        message = "call rejected: provider configuration"
    logger.error(
        message,
        extra={**fields, "status": "failed", "reason": reason, "field": where, "problem": problem},
    )
    if call_id is None:
        logger.error("cannot report this call: its CallSpec has no valid call_id", extra=fields)
    else:
        metadata = peek.get("metadata")
        reporter = CallReporter(
            call_id,
            phone=peek.get("type") == "outbound_phone",
            store=channel.outbox,
            prices=defs.prices,
            metadata=metadata if isinstance(metadata, dict) else None,
            on_event=_event_hook(channel),
        )
        await reporter.initiated()
        await reporter.end(reason, detail=f"{where}: {problem}" if where else problem)  # type: ignore[arg-type]
    await channel.aclose(timeout=10)
    ctx.shutdown(reason=f"{reason}: {exc}")


async def _run_call(
    ctx: JobContext,
    call: ResolvedCall,
    session: Any,
    agent: Any,
    fields: dict[str, Any],
    channel: ReportingChannel,
) -> None:
    recorder = SessionRecorder(session, call)
    reporter = CallReporter(
        call.spec.call_id,
        phone=call.spec.type == "outbound_phone",
        store=channel.outbox,
        prices=ctx.proc.userdata["definitions"].prices,
        metadata=call.spec.metadata,
        usage=recorder.usage_entries,
        on_event=_event_hook(channel),
    )
    await reporter.initiated()
    state = session.userdata

    async def finish(shutdown_reason: str) -> None:
        await reporter.end(
            state.ended_reason or "worker_shutdown",
            transcript=recorder.transcript,
            handoffs=recorder.handoffs(),
            latency=recorder.latency,
            at=state.ended_at,
        )
        life = reporter.lifecycle
        logger.info(
            "call ended",
            extra={
                **fields,
                "status": life.status,
                "reason": life.ended_reason,
                "duration_seconds": round(life.duration_seconds(0.0), 3),
                "transcript": [e.model_dump(mode="json") for e in recorder.transcript],
            },
        )
        await channel.aclose(timeout=10)

    ctx.add_shutdown_callback(finish)

    state_flags: dict[str, bool] = {}

    @session.on("agent_state_changed")
    def _on_agent_state(ev: Any) -> None:
        started = reporter.lifecycle.started_at
        if ev.new_state == "speaking" and started is not None and not state_flags.get("greeted"):
            state_flags["greeted"] = True
            metrics.observe_greeting_latency(time.time() - started)

    if ctx.is_fake_job():  # console: the terminal is the caller
        await session.start(agent=agent, room=ctx.room)
        await reporter.active(channel.settings.progress_interval)
        metrics.call_started()
        return

    await ctx.connect()
    logger.info(
        "call accepted",
        extra={
            **fields,
            "type": call.spec.type,
            "agent": call.start_agent.agent.id,
            "squad": call.squad.id if call.squad else None,
        },
    )
    if call.spec.type == "outbound_phone":
        identity = await dial_customer(ctx, call, reporter, state, fields, agent_tts=agent.tts)
        if identity is None:
            return
    else:
        identity = await _wait_for_web_participant(ctx, state, fields)
        if identity is None:
            return
    await reporter.active(channel.settings.progress_interval)
    metrics.call_started()

    @ctx.room.on("participant_disconnected")
    def _on_left(p: rtc.RemoteParticipant) -> None:
        if p.identity == identity and state.ended_at is None:
            state.ended_at = time.time()

    @session.on("close")
    def _on_close(ev: CloseEvent) -> None:
        state.ended_at = state.ended_at or time.time()
        if state.ended_reason is None:
            if ev.reason.value == "participant_disconnected":
                state.ended_reason = "customer_hangup"
            elif ev.error is not None:
                state.ended_reason = "provider_error"
            else:
                state.ended_reason = (
                    "worker_error" if ev.reason.value == "error" else "agent_hangup"
                )
        if state.ended_reason == "agent_hangup":
            ctx.delete_room()
        ctx.shutdown(reason=state.ended_reason)

    await session.start(
        agent=agent,
        room=ctx.room,
        room_options=room_io.RoomOptions(participant_identity=identity, close_on_disconnect=True),
    )


async def _wait_for_web_participant(
    ctx: JobContext, state: Any, fields: dict[str, Any]
) -> str | None:
    """The browser participant's identity, or None (call ended) if it never joins."""
    try:
        participant = await asyncio.wait_for(
            ctx.wait_for_participant(kind=[rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD]),
            timeout=PARTICIPANT_JOIN_TIMEOUT,
        )
    except TimeoutError:
        logger.warning("participant never joined", extra=fields)
        state.ended_reason = "participant_never_joined"
        ctx.shutdown(reason="participant_never_joined")
        return None
    return participant.identity
