"""The job entrypoint: one dispatched job = one call.

parse CallSpec → resolve → merge → build → join the room → greet → converse → end. A job whose
CallSpec is invalid ends with a structured ``call rejected`` log line naming the field; the worker
process carries on serving other jobs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from livekit import rtc
from livekit.agents import JobContext, JobProcess, llm, room_io
from livekit.agents.voice.events import CloseEvent
from livekit.plugins import silero  # plugins register on import, which must be the main thread

from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.loader import load_definitions
from convoi.pipeline.factory import PipelineError
from convoi.settings import WorkerSettings
from convoi.worker.log import logger
from convoi.worker.session import build_session

__all__ = ["PARTICIPANT_JOIN_TIMEOUT", "entrypoint", "prewarm"]

PARTICIPANT_JOIN_TIMEOUT = 120.0
"""Seconds a web call waits for its browser participant before ending ``participant_never_joined``."""


def prewarm(proc: JobProcess) -> None:
    """Once per job process: load silero's VAD and the definitions."""
    settings = WorkerSettings()
    proc.userdata["settings"] = settings
    proc.userdata["definitions"] = load_definitions(settings.config_dir).definitions
    proc.userdata["vad"] = silero.VAD.load()


def transcript_of(session: Any) -> list[dict[str, Any]]:
    """The conversation so far: role, text and time of each spoken message."""
    return [
        {
            "role": item.role,
            "text": item.text_content or "",
            "at": item.created_at,
            "interrupted": item.interrupted,
        }
        for item in session.history.items
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant")
    ]


def console_callspec(settings: WorkerSettings, defs: Any) -> str:
    """The CallSpec for ``convoi-worker console``: CONVOI_CONSOLE_CALL, else a web call to the
    first agent (console jobs carry no dispatch metadata)."""
    if settings.console_call is not None:
        return settings.console_call.read_text(encoding="utf-8")
    first = sorted(defs.agents)[0]
    return json.dumps({"call_id": "call_console0001", "type": "web", "agent_id": first})


def _call_id_of(metadata: str) -> str | None:
    try:
        value = json.loads(metadata).get("call_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _ensure_ready(proc: JobProcess) -> None:
    if "definitions" not in proc.userdata:  # setup hook not run (e.g. console mode)
        prewarm(proc)


async def entrypoint(ctx: JobContext) -> None:
    """Conduct the call described by ``ctx.job.metadata``."""
    _ensure_ready(ctx.proc)
    settings: WorkerSettings = ctx.proc.userdata["settings"]
    metadata = ctx.job.metadata
    if ctx.is_fake_job() and not metadata.strip():
        metadata = console_callspec(settings, ctx.proc.userdata["definitions"])
    fields: dict[str, Any] = {
        "job_id": ctx.job.id,
        "room": ctx.room.name,
        "call_id": _call_id_of(metadata),
    }
    ctx.log_context_fields = fields

    try:
        call = resolve_call(metadata, ctx.proc.userdata["definitions"])
        session, agent = build_session(call, settings, vad=ctx.proc.userdata["vad"])
    except CallSpecError as exc:
        logger.error(
            "call rejected: invalid CallSpec",
            extra={
                **fields,
                "status": "failed",
                "reason": exc.reason,
                "field": exc.field,
                "problem": exc.problem,
            },
        )
        ctx.shutdown(reason=f"{exc.reason}: {exc}")
        return
    except PipelineError as exc:
        logger.error(
            "call rejected: provider configuration",
            extra={**fields, "status": "failed", "reason": "provider_error", "problem": str(exc)},
        )
        ctx.shutdown(reason=f"provider_error: {exc}")
        return

    await _run_call(ctx, call, session, agent, fields)


async def _run_call(
    ctx: JobContext, call: ResolvedCall, session: Any, agent: Any, fields: dict[str, Any]
) -> None:
    if ctx.is_fake_job():  # console: the terminal is the caller
        await session.start(agent=agent, room=ctx.room)
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
    try:
        participant = await asyncio.wait_for(
            ctx.wait_for_participant(
                kind=[
                    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
                    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
                ]
            ),
            timeout=PARTICIPANT_JOIN_TIMEOUT,
        )
    except TimeoutError:
        logger.warning(
            "call ended: participant never joined",
            extra={**fields, "reason": "participant_never_joined"},
        )
        ctx.shutdown(reason="participant_never_joined")
        return

    @session.on("close")
    def _on_close(ev: CloseEvent) -> None:
        state = session.userdata
        reason = state.ended_reason or (
            "customer_hangup" if ev.reason.value == "participant_disconnected" else ev.reason.value
        )
        state.ended_reason = reason
        logger.info(
            "call ended",
            extra={
                **fields,
                "reason": reason,
                "error": str(ev.error) if ev.error else None,
                "transcript": transcript_of(session),
            },
        )
        if reason == "agent_hangup":
            ctx.delete_room()
        ctx.shutdown(reason=reason)

    await session.start(
        agent=agent,
        room=ctx.room,
        room_options=room_io.RoomOptions(
            participant_identity=participant.identity, close_on_disconnect=True
        ),
    )
