"""Resuming a call in a new job: restore its checkpoint and carry on the same conversation.

A job whose dispatch metadata holds a resume (:data:`convoi.reporting.checkpoint.RESUME_KEY`,
dispatched by the worker's main process when a job process died, :mod:`convoi.worker.supervision`,
or by the control plane when a whole worker went silent, :mod:`convoi.controlplane.checkpoints`)
does not dial and does not greet. It:

- continues the event sequence after the newest one known (the control plane applies them);
- restores the lifecycle (active since the checkpoint's ``started_at``: duration and cost are
  continuous), the usage so far, the transcript, the handoffs and the member in charge;
- gives that member the conversation as its chat history, finds the callee already in the room
  and says one short apology (``CONVOI_RESUME_APOLOGY``), then takes the next turn.

:class:`CheckpointTrigger` sends a ``call.progress`` (carrying a fresh checkpoint) after each
committed conversation item, one at a time, so the checkpoint is at most one turn old.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession

from convoi.agent import CallControls, ConvoiAgent
from convoi.reporting.checkpoint import (
    Resume,
    build_checkpoint,
    chat_context_of,
    history_of,
    merge_usage,
    transcript_of,
)
from convoi.reporting.events import Checkpoint, Handoff, TranscriptEntry, UsageEntry
from convoi.squads import SquadRuntime
from convoi.worker.log import logger

__all__ = [
    "CALLER_PRESENT_TIMEOUT",
    "DEFAULT_RESUME_APOLOGY",
    "CheckpointTrigger",
    "current_checkpoint",
    "find_caller",
    "restore_agent",
    "restored_transcript",
    "usage_after",
]

DEFAULT_RESUME_APOLOGY = "Sorry, I lost you for a moment."
"""What a resumed call says first (``CONVOI_RESUME_APOLOGY``)."""
CALLER_PRESENT_TIMEOUT = 10.0
"""How long a resumed job looks for the callee in the room before ending the call."""


def current_checkpoint(
    *,
    member: str,
    initiated_at: float,
    started_at: float | None,
    usage: list[UsageEntry],
    handoffs: list[Handoff],
    transcript: list[TranscriptEntry],
    session: AgentSession[CallControls] | None,
    resume: Resume | None,
) -> Checkpoint | None:
    """The call's checkpoint now (None before it is active)."""
    if started_at is None:
        return None
    items = list(session.history.items) if session is not None else []
    before = resume.checkpoint if resume is not None else None
    return build_checkpoint(
        member=member,
        initiated_at=initiated_at,
        started_at=started_at,
        usage=usage,
        handoffs=handoffs,
        history=history_of(transcript, items),
        dropped=before.dropped if before is not None else 0,
        resumes=resume.attempt if resume is not None else 0,
    )


def restored_transcript(resume: Resume) -> list[TranscriptEntry]:
    """The transcript up to the checkpoint (the resumed job records the rest after it)."""
    return transcript_of(resume.checkpoint)


def usage_after(resume: Resume | None, since: list[UsageEntry]) -> list[UsageEntry]:
    """The usage of the whole call: the checkpoint's plus this job's."""
    return merge_usage(resume.checkpoint.usage, since) if resume is not None else since


async def restore_agent(
    resume: Resume, agent: ConvoiAgent, squad: SquadRuntime | None
) -> ConvoiAgent:
    """The agent that carries on: the checkpoint's member (a squad's, with its handoffs so far)
    with the conversation as its chat history."""
    checkpoint = resume.checkpoint
    history = chat_context_of(checkpoint)
    if squad is not None and checkpoint.member in squad.call.members:
        squad.handoffs.extend(checkpoint.handoffs)
        return squad.member_agent(checkpoint.member, chat_ctx=history)
    await agent.update_chat_ctx(history)
    return agent


async def find_caller(room: rtc.Room, *, phone: bool, timeout: float) -> str | None:
    """The callee's identity in the room (None if they are not there within ``timeout``)."""
    kind = (
        rtc.ParticipantKind.PARTICIPANT_KIND_SIP
        if phone
        else rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    )
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def _check(participant: rtc.RemoteParticipant) -> None:
        if participant.kind == kind and not found.done():
            found.set_result(participant.identity)

    for participant in room.remote_participants.values():
        _check(participant)
    room.on("participant_connected", _check)
    try:
        return await asyncio.wait_for(asyncio.shield(found), timeout)
    except TimeoutError:
        return None
    finally:
        room.off("participant_connected", _check)


class CheckpointTrigger:
    """Sends ``call.progress`` after each committed conversation item (one at a time; items that
    arrive meanwhile are covered by one more)."""

    def __init__(
        self, progress: Callable[[], Awaitable[Any]], *, log_fields: dict[str, Any]
    ) -> None:
        self._progress = progress
        self._log_fields = log_fields
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._stopped = False

    def poke(self) -> None:
        """A turn was committed: checkpoint it soon."""
        if self._stopped:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="convoi-checkpoint")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._progress()
            except Exception:
                logger.exception("could not record a checkpoint", extra=self._log_fields)
            if not self._again or self._stopped:
                return

    def stop(self) -> None:
        """The call is ending: no more checkpoints (one being written finishes: cancelling it
        could leave a hole in the event sequence)."""
        self._stopped = True
