"""What a call's agents may ask of the call that owns them.

The AgentSession's ``userdata`` is a :class:`CallControls`: the agents running in the session count
the caller audio they stream (STT is billed on it), take the greeting audio rendered while a phone
rang, ask for the call to be hung up and press keys on the phone (``send_dtmf``). They never end the call, report it or shut the job down
themselves: the call object (:class:`convoi.worker.call.Call`) does, once.
rang, and ask for the call to be hung up. They never end the call, report it or shut the job down
themselves: the call object (:class:`convoi.worker.call.Call`) does, once. A phone call's agent
may also ask for the caller to be transferred (:meth:`CallControls.transfer_caller`).

:class:`DetachedControls` is a stand-alone implementation for sessions that run without a call
(text-mode tests, tools): it records what was asked, and a hang-up closes its session.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from livekit import rtc
from livekit.agents import AgentSession, llm

from convoi.definitions.models import TransferDestination
from convoi.knowledge.retrieval import Retrieval, Retriever

__all__ = ["CallControls", "DetachedControls", "TransferOutcome"]


@dataclass(frozen=True)
class TransferOutcome:
    """What became of a transfer the agent asked for."""

    succeeded: bool
    """True when the caller was handed over (the call is ending ``transferred``)."""
    error: str | None = None
    """Why it failed (e.g. ``SIP 403 Forbidden``); the caller is still on the line with us."""


class CallControls(Protocol):
    """The call as its agents see it (``session.userdata``)."""

    def count_stt_audio(self, member: str, seconds: float) -> None:
        """``seconds`` more caller audio were streamed to ``member``'s recogniser."""

    def take_greeting_audio(self) -> AsyncIterable[rtc.AudioFrame] | None:
        """The start member's pre-rendered greeting, once (None when there is none)."""

    def hang_up(self) -> None:
        """The agent ends the call (``agent_hangup``), after what it is saying now."""

    async def wait_to_greet(self) -> bool:
        """Wait until the start member may greet: True to greet, False when it must not (an
        answering machine answered; the call deals with it). At once True without voicemail
        detection."""
        return True

    def heard_before_greeting(self, message: llm.ChatMessage) -> bool:
        """True when the callee's turn ``message`` came before the greeting was released (or
        while a machine is being dealt with) and must get no reply of its own."""
        return False

    async def press_keys(self, keys: str) -> None:
        """Press ``keys`` (``0``-``9``, ``*``, ``#``) on the phone, in order (phone calls)."""

    async def transfer_caller(
        self, destination: TransferDestination, *, summary: str | None = None
    ) -> TransferOutcome:
        """Hand the caller over to ``destination`` (cold: SIP REFER; warm: brief a human first,
        then connect them). Returns once it succeeded (the call is then ending) or failed (the
        conversation goes on). ``summary`` is the agent's short reason, for a warm briefing."""
        ...

    def take_resume_apology(self) -> str | None:
        """What a resumed call says instead of the greeting, once (None: greet as usual;
        see convoi.worker.resume)."""
        return None

    async def retrieve_knowledge(self, kb_ids: Sequence[str], query: str) -> Retrieval | None:
        """The chunks of knowledge bases ``kb_ids`` for the caller's turn ``query`` (never
        raises: a failure is a Retrieval with an ``error``); None when the call has no
        knowledge index at all."""
        return None


@dataclass
class DetachedControls:
    """Controls of a session that runs without a call: records what was asked; a hang-up
    closes :attr:`session` (drained) when it is set."""

    stt_audio_seconds: dict[str, float] = field(default_factory=dict)
    greeting_audio: list[rtc.AudioFrame] | None = None
    hung_up: bool = False
    """True once an agent asked to hang up."""
    session: AgentSession[Any] | None = None
    pressed: list[str] = field(default_factory=list)
    """The keys each ``press_keys`` asked for, in order."""
    transfers: list[tuple[TransferDestination, str | None]] = field(default_factory=list)
    """Every transfer asked for: the destination and the summary."""
    transfer_outcome: TransferOutcome = TransferOutcome(succeeded=True)
    """What :meth:`transfer_caller` answers."""
    resume_apology: str | None = None
    """Set to play a resumed call's apology instead of the greeting."""
    retriever: Retriever | None = None
    """Answers :meth:`retrieve_knowledge` (None: no knowledge)."""

    def count_stt_audio(self, member: str, seconds: float) -> None:
        """Add ``seconds`` to ``member``'s count."""
        self.stt_audio_seconds[member] = self.stt_audio_seconds.get(member, 0.0) + seconds

    def take_greeting_audio(self) -> AsyncIterable[rtc.AudioFrame] | None:
        """The greeting audio, once."""
        frames, self.greeting_audio = self.greeting_audio, None
        return None if frames is None else _replay(frames)

    def hang_up(self) -> None:
        """Record the hang-up and close the session after what is being said."""
        self.hung_up = True
        if self.session is not None:
            self.session.shutdown(drain=True)

    async def wait_to_greet(self) -> bool:
        """No detection without a call: greet at once."""
        return True

    def heard_before_greeting(self, message: llm.ChatMessage) -> bool:
        """Every turn gets its reply."""
        return False

    async def press_keys(self, keys: str) -> None:
        """Record the keys (there is no phone to press them on)."""
        self.pressed.append(keys)

    async def transfer_caller(
        self, destination: TransferDestination, *, summary: str | None = None
    ) -> TransferOutcome:
        """Record the request and answer :attr:`transfer_outcome`."""
        self.transfers.append((destination, summary))
        return self.transfer_outcome

    def take_resume_apology(self) -> str | None:
        """:attr:`resume_apology`, once."""
        text, self.resume_apology = self.resume_apology, None
        return text

    async def retrieve_knowledge(self, kb_ids: Sequence[str], query: str) -> Retrieval | None:
        """:attr:`retriever`'s answer, if there is one."""
        return await self.retriever.retrieve(kb_ids, query) if self.retriever else None


async def _replay(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame
