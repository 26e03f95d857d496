"""The worker's main process ends the calls of job processes that died.

A job process that dies (``kill -9``, out of memory, a native crash) cannot end its call: the
main process sees the process close (livekit-agents' process pool ``process_closed``), reads the
call id from the job's dispatch metadata and, when the call's newest event in the shared outbox is
not terminal, commits its end (:func:`convoi.reporting.orphans.end_orphaned_call`: ``failed`` /
``worker_error``) and deletes the room, so nobody stays in a call nobody conducts. The main
process's own sender (see :mod:`convoi.worker.server`) delivers the events. When the whole worker
dies, the control plane's call lease does the same (:mod:`convoi.controlplane.leases`).

Resume instead of fail: when the dead job's call was active, its newest event carries a checkpoint
(:mod:`convoi.reporting.checkpoint`), it was resumed fewer than ``CONVOI_MAX_RESUMES`` times and the
callee (a SIP or browser participant) is still in the room, the main process keeps the room and
dispatches the agent again to it (CreateAgentDispatch, same agent name; the CallSpec plus the
resume in the metadata). Any worker of that name takes it and carries on the conversation
(:mod:`convoi.worker.resume`). livekit-server does not re-assign a job whose process or worker
died (its agent service only deregisters the job), so nothing else dispatches it twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from livekit import api
from livekit.agents import AgentServer
from pydantic import TypeAdapter, ValidationError

from convoi.definitions.ids import CallId
from convoi.reporting.checkpoint import Resume, split_resume, with_resume
from convoi.reporting.events import CallEvent
from convoi.reporting.orphans import end_orphaned_call, resumable
from convoi.reporting.outbox import Outbox
from convoi.worker.config import WorkerConfig
from convoi.worker.log import logger

__all__ = ["call_of_job", "callee_in_room", "watch_job_processes"]

_CALL_ID = TypeAdapter(CallId)
ROOM_DELETE_TIMEOUT = 10.0


def call_of_job(metadata: str) -> tuple[str, dict[str, Any] | None] | None:
    """The call id and CallSpec metadata of a job's dispatch metadata (None: no valid call id)."""
    try:
        spec = json.loads(metadata)
        call_id = _CALL_ID.validate_python(spec["call_id"])
    except (ValueError, TypeError, KeyError, ValidationError, RecursionError):
        return None
    extra = spec.get("metadata")
    return call_id, extra if isinstance(extra, dict) else None


def watch_job_processes(server: AgentServer, config: WorkerConfig) -> None:
    """From the worker's start: end the call of every job process that closes without having
    ended it."""
    tasks: set[asyncio.Task[None]] = set()

    @server.on("worker_started")
    def _on_started() -> None:
        pool = server._proc_pool  # livekit-agents exposes no public hook for a job's exit

        def _on_closed(proc: Any) -> None:
            info = getattr(proc, "running_job", None)
            if info is None or info.fake_job:
                return
            task = asyncio.create_task(
                _after_job_death(config, info.job.metadata, info.job.room.name, proc.exitcode)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        pool.on("process_closed", _on_closed)


def callee_in_room(participants: list[api.ParticipantInfo]) -> bool:
    """Whether someone other than an agent (the SIP callee, a browser) is in the room."""
    kinds = (api.ParticipantInfo.Kind.SIP, api.ParticipantInfo.Kind.STANDARD)
    return any(
        p.kind in kinds and p.state != api.ParticipantInfo.State.DISCONNECTED for p in participants
    )


async def _after_job_death(
    config: WorkerConfig, metadata: str, room: str, exitcode: int | None
) -> None:
    """Resume the dead job's call if it can be, else end it."""
    try:
        if await _resume_if_possible(config, metadata, room, exitcode):
            return
    except Exception:
        logger.exception("could not resume a dead job's call; ending it", extra={"room": room})
    await _end_if_orphaned(config, metadata, room, exitcode)


async def _resume_if_possible(
    config: WorkerConfig, metadata: str, room: str, exitcode: int | None
) -> bool:
    call = call_of_job(metadata)
    if call is None:
        return False
    call_id = call[0]
    spec, earlier = split_resume(metadata)
    attempts = earlier.attempt if earlier is not None else 0
    last = await asyncio.to_thread(_latest, config, call_id)
    resume = resumable(last, attempts=attempts, max_resumes=config.settings.max_resumes)
    if resume is None:
        return False
    fields = {"call_id": call_id, "room": room, "exit_code": exitcode, "attempt": resume.attempt}
    settings = config.settings
    async with api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
    ) as lk:
        listed = await asyncio.wait_for(
            lk.room.list_participants(api.ListParticipantsRequest(room=room)), ROOM_DELETE_TIMEOUT
        )
        if not callee_in_room(list(listed.participants)):
            return False
        await _dispatch_resume(lk, settings.agent_name, room, spec, resume)
    logger.warning("job process died during its call: dispatched it again", extra=fields)
    return True


async def _dispatch_resume(
    lk: api.LiveKitAPI, agent_name: str, room: str, spec: str, resume: Resume
) -> None:
    request = api.CreateAgentDispatchRequest(
        agent_name=agent_name, room=room, metadata=with_resume(spec, resume)
    )
    await asyncio.wait_for(lk.agent_dispatch.create_dispatch(request), ROOM_DELETE_TIMEOUT)


def _latest(config: WorkerConfig, call_id: str) -> CallEvent | None:
    config.delivery.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    with Outbox(config.delivery.outbox_path) as outbox:
        return outbox.latest(call_id)


async def _end_if_orphaned(
    config: WorkerConfig, metadata: str, room: str, exitcode: int | None
) -> None:
    call = call_of_job(metadata)
    if call is None:
        return
    call_id, extra = call
    fields = {"call_id": call_id, "room": room, "exit_code": exitcode}
    why = f"the job process running the call died (exit code {exitcode})"
    try:
        ended = await asyncio.to_thread(_commit_end, config, call_id, why, extra)
    except Exception:
        logger.exception("could not record the end of a dead job's call", extra=fields)
        return
    if ended is None:
        return  # the job had ended its call before it exited
    logger.error("job process died during its call: ended it failed/worker_error", extra=fields)
    settings = config.settings
    try:
        async with api.LiveKitAPI(
            settings.livekit_url,
            settings.livekit_api_key,
            settings.livekit_api_secret.get_secret_value(),
        ) as lk:
            await asyncio.wait_for(
                lk.room.delete_room(api.DeleteRoomRequest(room=room)), ROOM_DELETE_TIMEOUT
            )
    except Exception as exc:  # gone already, or LiveKit unreachable: the call is ended anyway
        logger.warning("could not delete the dead job's room: %s", type(exc).__name__, extra=fields)


def _commit_end(
    config: WorkerConfig, call_id: str, why: str, metadata: dict[str, Any] | None
) -> object:
    config.delivery.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    with Outbox(config.delivery.outbox_path) as outbox:
        return end_orphaned_call(outbox, call_id, why=why, now=time.time(), metadata=metadata)
