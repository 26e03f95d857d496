"""Checkpoints: what a call keeps outside its job process so that another job can resume it.

A running call puts a :class:`~convoi.reporting.events.Checkpoint` in every ``call.progress``
event (after each committed conversation item, and with the periodic progress): the conversation
(spoken messages with their member, tool calls with their outputs), the member in charge, when the
call was initiated and became active, the usage so far, the handoffs and how often it was resumed.
The events reach the outbox (read by the worker's main process when a job dies:
:mod:`convoi.worker.supervision`) and the control plane (latest only, per call:
:mod:`convoi.controlplane.checkpoints`). It is never logged and never put in ``call.ended``.

Bounded: each text is cut at :data:`MAX_TEXT_CHARS`, and the oldest items are left out until the
checkpoint's JSON fits in :data:`CHECKPOINT_MAX_BYTES` (``dropped`` counts them); a resumed call
then carries on with the newest part of its conversation.

A resume travels in the dispatch metadata: the CallSpec JSON plus :data:`RESUME_KEY` holding a
:class:`Resume` (attempt number, newest known event sequence, the checkpoint). LiveKit's dispatch
metadata limit (``limit.max_metadata_size``, 512 KiB by default) is far above the bound.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from livekit.agents import llm
from pydantic import BaseModel, ConfigDict, ValidationError

from convoi.reporting.events import Checkpoint, Handoff, HistoryItem, TranscriptEntry, UsageEntry

__all__ = [
    "CHECKPOINT_MAX_BYTES",
    "MAX_TEXT_CHARS",
    "RESUME_KEY",
    "Resume",
    "bound_history",
    "build_checkpoint",
    "chat_context_of",
    "history_of",
    "merge_usage",
    "split_resume",
    "transcript_of",
    "with_resume",
]

CHECKPOINT_MAX_BYTES = 32_000
"""Upper bound of a checkpoint's JSON (bytes); the oldest conversation items go first."""
MAX_TEXT_CHARS = 2_000
"""Longest text kept per item (a message, a tool's arguments or output)."""
RESUME_KEY = "convoi_resume"
"""Dispatch metadata key of a resume (next to the CallSpec's own fields)."""


class Resume(BaseModel):
    """A dispatch that resumes a call instead of starting it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt: int
    """1 for the first resume of the call, 2 for the second, ..."""
    sequence: int
    """The newest event sequence known for the call: the resumed job's events come after it."""
    checkpoint: Checkpoint


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def history_of(
    transcript: Sequence[TranscriptEntry], items: Sequence[llm.ChatItem]
) -> list[HistoryItem]:
    """The conversation: the spoken ``transcript`` and the tool calls (with outputs) among the
    session's chat ``items``, in time order. A tool call without its output is left out."""
    outputs = {i.call_id: i for i in items if isinstance(i, llm.FunctionCallOutput)}
    merged: list[HistoryItem] = [
        HistoryItem(
            role=e.role,
            text=_cut(e.text),
            at=e.at,
            member=e.member,
            interrupted=e.interrupted,
            source=e.source,
        )
        for e in transcript
    ]
    for item in items:
        if isinstance(item, llm.FunctionCall) and item.call_id in outputs:
            out = outputs[item.call_id]
            merged.append(
                HistoryItem(
                    role="tool",
                    text=_cut(out.output),
                    at=item.created_at,
                    name=item.name,
                    arguments=_cut(item.arguments),
                    call_id=item.call_id,
                    error=out.is_error,
                )
            )
    merged.sort(key=lambda h: h.at)  # stable: simultaneous items keep their order
    return merged


def bound_history(checkpoint: Checkpoint, max_bytes: int = CHECKPOINT_MAX_BYTES) -> Checkpoint:
    """``checkpoint`` without its oldest items, as many as it takes to fit in ``max_bytes``."""
    size = len(checkpoint.model_dump_json().encode())
    if size <= max_bytes:
        return checkpoint
    history = list(checkpoint.history)
    sizes = [len(h.model_dump_json().encode()) + 1 for h in history]
    dropped = 0
    while history and size > max_bytes:
        size -= sizes[dropped]
        history.pop(0)
        dropped += 1
    return checkpoint.model_copy(
        update={"history": history, "dropped": checkpoint.dropped + dropped}
    )


def build_checkpoint(
    *,
    member: str,
    initiated_at: float,
    started_at: float,
    usage: Sequence[UsageEntry],
    handoffs: Sequence[Handoff],
    history: Sequence[HistoryItem],
    dropped: int = 0,
    resumes: int = 0,
    max_bytes: int = CHECKPOINT_MAX_BYTES,
) -> Checkpoint:
    """The checkpoint of a call now (bounded to ``max_bytes``)."""
    checkpoint = Checkpoint(
        member=member,
        initiated_at=initiated_at,
        started_at=started_at,
        usage=list(usage),
        handoffs=list(handoffs),
        history=list(history),
        dropped=dropped,
        resumes=resumes,
    )
    return bound_history(checkpoint, max_bytes)


def transcript_of(checkpoint: Checkpoint) -> list[TranscriptEntry]:
    """The spoken part of the checkpoint's conversation (for the resumed call's transcript)."""
    return [
        TranscriptEntry(
            role=h.role,
            text=h.text,
            at=h.at,
            member=h.member,
            interrupted=h.interrupted,
            source=h.source,
        )
        for h in checkpoint.history
        if h.role != "tool"
    ]


def chat_context_of(checkpoint: Checkpoint) -> llm.ChatContext:
    """The chat history a resumed agent starts with: the messages and tool calls, in order."""
    ctx = llm.ChatContext.empty()
    for h in checkpoint.history:
        if h.role == "tool":
            call_id = h.call_id or f"resumed_{len(ctx.items)}"
            ctx.items.append(
                llm.FunctionCall(
                    call_id=call_id,
                    name=h.name or "tool",
                    arguments=h.arguments or "{}",
                    created_at=h.at,
                )
            )
            ctx.items.append(
                llm.FunctionCallOutput(
                    call_id=call_id,
                    name=h.name or "tool",
                    output=h.text,
                    is_error=h.error,
                    created_at=h.at,
                )
            )
        else:
            ctx.add_message(role=h.role, content=h.text, interrupted=h.interrupted, created_at=h.at)
    return ctx


def merge_usage(base: Sequence[UsageEntry], more: Sequence[UsageEntry]) -> list[UsageEntry]:
    """``base`` (the usage before a resume) plus ``more`` (since), summed per member and model."""
    totals: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for entry in [*base, *more]:
        key = (entry.member, entry.kind, entry.provider, entry.model)
        row = totals.get(key)
        if row is None:
            totals[key] = entry.model_dump()
            continue
        for field in (
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "characters",
        ):
            row[field] += getattr(entry, field)
        row["audio_seconds"] = round(row["audio_seconds"] + entry.audio_seconds, 6)
    return [UsageEntry(**row) for row in totals.values()]


def with_resume(metadata: str, resume: Resume) -> str:
    """The dispatch metadata that resumes the call of ``metadata`` (its CallSpec JSON)."""
    spec = json.loads(metadata)
    if not isinstance(spec, dict):
        raise ValueError("the CallSpec is not a JSON object")
    spec[RESUME_KEY] = resume.model_dump(mode="json")
    return json.dumps(spec, separators=(",", ":"))


def split_resume(metadata: str) -> tuple[str, Resume | None]:
    """The CallSpec JSON without its resume, and the resume (None: a first dispatch). A resume
    that does not validate is left in the CallSpec, which then fails validation (the call ends
    ``invalid_request``; it is never started afresh, which would dial the customer again)."""
    try:
        spec = json.loads(metadata)
    except (ValueError, RecursionError):
        return metadata, None
    if not isinstance(spec, dict) or RESUME_KEY not in spec:
        return metadata, None
    try:
        resume = Resume.model_validate(spec[RESUME_KEY])
    except ValidationError:
        return metadata, None
    del spec[RESUME_KEY]
    return json.dumps(spec, separators=(",", ":")), resume
