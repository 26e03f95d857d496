"""A call's limits while it is active: caller silence and maximum duration.

:class:`LimitsWatch` never ends a call itself: it asks the call that owns it (``end_soon``), with
``silence_timeout`` or ``max_duration``, after saying what the agent's limits say to say.

- **Silence** rides on livekit-agents' away detection (``AgentSession(user_away_timeout=…)``):
  the user turns ``away`` after ``silence_timeout_seconds`` during which neither the caller nor
  the agent spoke and no tool ran. The first time, the agent says ``silence_prompt`` and the
  countdown restarts (``reset_away_timer``); the caller speaking (or pressing a key:
  :meth:`LimitsWatch.caller_active`) forgets it; a second ``away`` says ``silence_goodbye`` and
  ends the call (drained: the goodbye is heard).
- **Duration**: ``wrap_up_seconds`` before ``max_duration_seconds`` (counted from ``active``) the
  agent says ``wrap_up_message``; at ``max_duration_seconds`` the call ends (drained).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from livekit.agents import AgentSession
from livekit.agents.voice.events import UserStateChangedEvent

from convoi.definitions.models import CallLimits
from convoi.lifecycle import EndedReason
from convoi.worker.log import logger

__all__ = ["EndSoon", "LimitsWatch"]


class EndSoon(Protocol):
    """``Call.end_soon`` as the watch uses it."""

    def __call__(self, reason: EndedReason, *, drain: bool = ...) -> object: ...


class LimitsWatch:
    """Silence and duration limits of one active call."""

    def __init__(
        self,
        session: AgentSession[Any],
        limits: CallLimits,
        end_soon: EndSoon,
        *,
        log_fields: dict[str, Any] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._limits = limits
        self._end_soon = end_soon
        self._fields = log_fields or {}
        self._sleep = sleep
        self._prompted = False
        self._deadline: asyncio.Task[None] | None = None
        session.on("user_state_changed", self._on_user_state)

    def start(self) -> None:
        """The call is active: start counting its duration."""
        if self._deadline is None:
            self._deadline = asyncio.create_task(self._count_down(), name="convoi-max-duration")

    def stop(self) -> None:
        """The call is ending: no more prompts or wrap-ups."""
        self._session.off("user_state_changed", self._on_user_state)
        if self._deadline is not None:
            self._deadline.cancel()

    def caller_active(self) -> None:
        """The caller did something other than speak (pressed a key): as speaking does, it
        forgets the silence prompt, so the next silence is prompted again."""
        self._prompted = False

    def _on_user_state(self, event: UserStateChangedEvent) -> None:
        if event.new_state == "speaking":
            self._prompted = False
            return
        if event.new_state != "away":
            return
        if not self._prompted:
            self._prompted = True
            logger.info("caller silent: prompting", extra=self._fields)
            self._say(self._limits.silence_prompt, allow_interruptions=True)
            with contextlib.suppress(RuntimeError):  # the session is closing
                self._session.reset_away_timer()  # a second full period of silence
            return
        logger.info("caller still silent: ending the call", extra=self._fields)
        self._say(self._limits.silence_goodbye, allow_interruptions=False)
        self._end_soon("silence_timeout", drain=True)

    async def _count_down(self) -> None:
        limits = self._limits
        await self._sleep(limits.max_duration_seconds - limits.wrap_up_seconds)  # the limit itself
        logger.info("call nearly at its maximum duration: wrapping up", extra=self._fields)
        self._say(limits.wrap_up_message, allow_interruptions=False)
        await self._sleep(limits.wrap_up_seconds)
        logger.info("call at its maximum duration: ending it", extra=self._fields)
        self._end_soon("max_duration", drain=True)

    def _say(self, text: str, *, allow_interruptions: bool) -> None:
        try:
            self._session.say(text, allow_interruptions=allow_interruptions, add_to_chat_ctx=True)
        except RuntimeError:  # the session is not running any more
            logger.warning("could not say the limit message", extra=self._fields)
