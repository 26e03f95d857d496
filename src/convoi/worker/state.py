"""Per-call state, typed through ``AgentSession[CallState]`` / ``RunContext[CallState]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from livekit import rtc

from convoi.callspec import ResolvedCall

if TYPE_CHECKING:
    from convoi.squads import SquadRuntime

__all__ = ["CallState"]


@dataclass
class CallState:
    """What one call's session knows about itself."""

    call: ResolvedCall
    ended_reason: str | None = None
    """Set when the call's end is decided (``agent_hangup``, ``customer_hangup``, …)."""
    ended_at: float | None = None
    """Unix time the call really ended (the caller left, the agent hung up)."""
    stt_audio_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds of caller audio streamed to the recogniser, per member: what STT is billed on."""
    greeting_audio: list[rtc.AudioFrame] | None = None
    """The start member's greeting, synthesised while a phone call rings (played on answer)."""
    extra_tts_characters: dict[str, int] = field(default_factory=dict)
    """Characters synthesised outside the session (the pre-rendered greeting), per member."""
    squad: SquadRuntime | None = None
    """A squad call's runtime: ``squad.handoffs`` and ``squad.current_member`` (None otherwise)."""
