"""The phone keypad on a call: keys the caller presses reach the LLM, keys the agent presses reach
the phone.

**In.** livekit-sip turns the phone's RFC 4733 telephone-events into SIP DTMF data packets; the
room emits each as ``sip_dtmf_received`` (:class:`rtc.SipDTMF`). :class:`KeypadInput` takes the
call's caller's keys (nobody else's) and collects them into one input (:class:`KeyBuffer`):
``#`` ends it at once, otherwise :data:`INTER_KEY_TIMEOUT` seconds without another key do. The
input becomes the caller's turn: ``session.generate_reply(user_input=keys_message(keys))``, a user
message the LLM reads as "The caller pressed the keys 1 2 3 #", marked with
:data:`~convoi.worker.recording.DTMF_EXTRA_KEY` so the transcript records ``123#`` with source
``dtmf``. What the agent is saying is interrupted first, as when the caller speaks (unless it may
not be).

Pressing keys is caller activity: livekit's RoomIO resets the session's away timer on every key of
its linked participant (the caller), so the silence limit (:mod:`convoi.worker.limits`) does not
run out while the caller types; and each key makes the limit forget its "are you still there?"
prompt, as speaking does (``on_key``: :meth:`~convoi.worker.limits.LimitsWatch.caller_active`).

**Out.** :func:`publish_keys` presses keys for the agent's ``send_dtmf`` tool: one SIP DTMF
packet per key from the agent's participant (livekit's own ``send_dtmf_events`` does the same),
which livekit-sip plays to the phone as telephone-events.

The keys are never logged (they may be a PIN or a card number); their count is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, llm
from livekit.agents.beta.tools.send_dtmf import DEFAULT_DTMF_PUBLISH_DELAY
from livekit.agents.beta.workflows.utils import DtmfEvent, dtmf_event_to_code

from convoi.worker.log import logger
from convoi.worker.recording import DTMF_EXTRA_KEY

__all__ = [
    "END_KEY",
    "INTER_KEY_TIMEOUT",
    "KeyBuffer",
    "KeypadInput",
    "describe_keys",
    "keys_message",
    "publish_keys",
]

INTER_KEY_TIMEOUT = 2.0
"""Seconds without another key after which the keys pressed so far are one input."""
END_KEY = "#"
"""The key that ends an input at once (it is part of the input)."""
MAX_KEYS = 64
"""An input is given to the LLM once this many keys were pressed, ended or not."""
_KEYS = frozenset("0123456789*#ABCD")


def describe_keys(keys: str) -> str:
    """What the LLM reads for ``keys``: ``The caller pressed the keys 1 2 3 #``."""
    noun = "key" if len(keys) == 1 else "keys"
    return f"The caller pressed the {noun} {' '.join(keys)} on their phone's keypad."


def keys_message(keys: str) -> llm.ChatMessage:
    """The caller's turn made of ``keys``: :func:`describe_keys` for the LLM, the keys themselves
    for the transcript (``extra[DTMF_EXTRA_KEY]``)."""
    return llm.ChatMessage(role="user", content=[describe_keys(keys)], extra={DTMF_EXTRA_KEY: keys})


class KeyBuffer:
    """The keys of the input being typed (pure: the caller of :meth:`press` keeps the time)."""

    def __init__(self, *, end_key: str = END_KEY, max_keys: int = MAX_KEYS) -> None:
        self._end_key = end_key
        self._max = max_keys
        self._keys: list[str] = []

    @property
    def pending(self) -> bool:
        """True while keys wait for the input to end."""
        return bool(self._keys)

    def press(self, key: str) -> str | None:
        """Add ``key`` (``a``-``d`` count as ``A``-``D``; anything else is ignored); the whole
        input when this key ends it (the end key, or the most keys an input holds)."""
        key = key.upper()
        if key not in _KEYS:
            return None
        self._keys.append(key)
        if key == self._end_key or len(self._keys) >= self._max:
            return self.take()
        return None

    def take(self) -> str | None:
        """The keys pressed so far as one input (None when there are none); starts a new one."""
        keys, self._keys = "".join(self._keys), []
        return keys or None


class KeypadInput:
    """The caller's keys on one phone call, given to the session's agent as caller turns.

    Call :meth:`start` once the session runs with the caller ``caller`` (their participant
    identity), :meth:`stop` when the call ends. ``on_key`` is told of each of the caller's keys
    (the silence limit counts them as activity).
    """

    def __init__(
        self,
        room: rtc.Room,
        session: AgentSession[Any],
        caller: str,
        *,
        timeout: float = INTER_KEY_TIMEOUT,
        on_key: Callable[[], object] | None = None,
        log_fields: dict[str, Any] | None = None,
    ) -> None:
        self._room = room
        self._session = session
        self._caller = caller
        self._timeout = timeout
        self._on_key = on_key
        self._fields = log_fields or {}
        self._buffer = KeyBuffer()
        self._timer: asyncio.TimerHandle | None = None
        self._listening = False
        self.inputs = 0
        """How many inputs were given to the agent."""

    def start(self) -> None:
        """Listen to the room's DTMF."""
        if not self._listening:
            self._listening = True
            self._room.on("sip_dtmf_received", self._on_dtmf)

    def stop(self) -> None:
        """Ignore keys from now on; keys still pending are dropped (the call is over). The room's
        listener stays until the room goes, with the call."""
        self._listening = False
        self._cancel_timer()
        self._buffer.take()

    def _on_dtmf(self, event: rtc.SipDTMF) -> None:
        if not self._listening:
            return
        if event.participant is None or event.participant.identity != self._caller:
            return  # only the caller's keys are the caller's input
        if self._on_key is not None:
            self._on_key()
        self._cancel_timer()
        if (keys := self._buffer.press(event.digit)) is not None:
            self._submit(keys)
        elif self._buffer.pending:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        if (keys := self._buffer.take()) is not None:
            self._submit(keys)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _submit(self, keys: str) -> None:
        logger.info("caller pressed keys", extra={**self._fields, "keys": len(keys)})
        with contextlib.suppress(RuntimeError):  # nothing playing, or it may not be interrupted
            self._session.interrupt()
        try:
            self._session.generate_reply(user_input=keys_message(keys))
        except RuntimeError:  # the session is closing
            logger.warning("keys pressed as the call ended: dropped", extra=self._fields)
            return
        self.inputs += 1


async def publish_keys(
    participant: rtc.LocalParticipant, keys: str, *, gap: float = DEFAULT_DTMF_PUBLISH_DELAY
) -> None:
    """Press ``keys`` (``0``-``9``, ``*``, ``#``, ``A``-``D``) as ``participant``: one SIP DTMF
    packet per key, ``gap`` seconds apart (livekit's own pacing); the SIP bridge plays them to
    the phone in order."""
    for i, key in enumerate(keys):
        if i:
            await asyncio.sleep(gap)  # pacing between keys, as livekit's send_dtmf_events
        await participant.publish_dtmf(code=dtmf_event_to_code(DtmfEvent(key)), digit=key)
