"""Per-call state, typed through ``AgentSession[CallState]`` / ``RunContext[CallState]``."""

from __future__ import annotations

from dataclasses import dataclass

from convoi.callspec import ResolvedCall

__all__ = ["CallState"]


@dataclass
class CallState:
    """What one call's session knows about itself."""

    call: ResolvedCall
    ended_reason: str | None = None
    """Set when the call's end is decided (``agent_hangup``, ``customer_hangup``, …)."""
