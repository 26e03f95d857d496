"""Definitions loaded from ``agents_config/``: agents, squads, phone numbers, knowledge bases.

All models reject unknown keys and are immutable. Cross references (an agent's knowledge bases, a
squad's members and destinations) are checked by :class:`Definitions` once everything is loaded.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convoi.definitions.ids import (
    E164,
    AgentId,
    KnowledgeBaseId,
    PhoneNumberId,
    SquadId,
)
from convoi.definitions.prices import PriceList
from convoi.definitions.providers import Fallbacks, LLMConfig, STTConfig, TTSConfig
from convoi.greeting import PLACEHOLDERS, unknown_placeholders

__all__ = [
    "Agent",
    "CallLimits",
    "Definitions",
    "Handoff",
    "KnowledgeBase",
    "PhoneNumber",
    "SipTrunk",
    "Squad",
    "SquadMember",
    "TransferDestination",
    "Voicemail",
]

MAX_FIRST_MESSAGE = 2_000
_MEMBER_KEY = re.compile(r"^[a-z][a-z0-9_]{0,51}$")  # transfer_to_<key> fits 64-char tool names
MAX_SYSTEM_PROMPT = 32_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallLimits(_Model):
    """Bounds on one call run by an agent (overridable per call: ``agent_overrides.limits``)."""

    max_duration_seconds: int = Field(1800, ge=10, le=4 * 3600)
    """The call ends ``completed`` / ``max_duration`` after this long (web and phone)."""
    silence_timeout_seconds: int = Field(30, ge=5, le=600)
    """Caller silence (while the agent is not speaking or running a tool) before the agent
    prompts once; a second period of silence ends the call ``completed`` / ``silence_timeout``."""
    ringing_timeout_seconds: int = Field(30, ge=5, le=120)
    silence_prompt: str = Field("Are you still there?", min_length=1, max_length=300)
    """What the agent says after the first period of silence."""
    silence_goodbye: str = Field(
        "I haven't heard from you, so I'll end the call now. Goodbye!", min_length=1, max_length=300
    )
    """What the agent says before ending a silent call."""
    wrap_up_message: str = Field(
        "We're almost out of time for this call. Thank you for calling, goodbye!",
        min_length=1,
        max_length=300,
    )
    """Said ``wrap_up_seconds`` before ``max_duration_seconds``."""
    wrap_up_seconds: int = Field(15, ge=1, le=600)
    """How long before the end of the call the wrap-up message is said."""

    @model_validator(mode="after")
    def _wrap_up_fits(self) -> CallLimits:
        if self.wrap_up_seconds >= self.max_duration_seconds:
            raise ValueError("wrap_up_seconds must be less than max_duration_seconds")
        return self


class Voicemail(_Model):
    """Answering-machine detection on outbound calls and what to do when a machine answers.

    When an agent has ``voicemail``, its outbound calls hold the greeting until livekit-agents'
    answering-machine detection (``voice/amd/``) has classified the first thing the callee says:
    a person hears the greeting at once; a machine gets ``action``, and the call ends
    ``completed`` / ``voicemail``. Web calls never detect."""

    action: Literal["hang_up", "leave_message"] = "hang_up"
    """``hang_up`` at once, or ``leave_message``: say :attr:`message` in full, then hang up."""
    message: str | None = Field(None, min_length=1, max_length=MAX_FIRST_MESSAGE)
    """The message left on the machine (same placeholders as ``first_message``); required for
    ``leave_message``."""
    no_speech_seconds: float = Field(3.0, ge=0.5, le=30.0)
    """A callee who says nothing this long after answering is taken for a person (greeted)."""
    max_detection_seconds: float = Field(15.0, ge=2.0, le=60.0)
    """Upper bound on holding the greeting; an undecided callee is then greeted."""

    @model_validator(mode="after")
    def _message_when_leaving_one(self) -> Voicemail:
        if self.action == "leave_message" and not self.message:
            raise ValueError("action leave_message needs a message")
        if self.message is not None and (unknown := unknown_placeholders(self.message)):
            raise ValueError(f"unknown placeholder {unknown[0]} in message")
        return self


class TransferDestination(_Model):
    """Somewhere an agent may transfer a phone call to (a human, another line)."""

    name: str = Field(..., min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    """What the LLM names when it calls ``transfer_call`` (e.g. ``billing_desk``)."""
    destination: str = Field(
        ...,
        pattern=r"^(\+[1-9][0-9]{6,14}|sips?:[^\s@]+@[^\s@]+)$",
        max_length=255,
    )
    """An E.164 number (``+15550000100``) or a SIP URI (``sip:desk@pbx.example.com``)."""
    description: str = Field(..., min_length=1, max_length=1_000)
    """When to transfer there: the LLM reads it in the ``transfer_call`` tool."""
    mode: Literal["cold", "warm"] = "cold"
    """``cold``: SIP REFER hands the caller over and our leg ends. ``warm``: the agent first calls
    the destination, briefs the human on the call, then connects the caller (livekit-agents'
    ``WarmTransferTask``)."""


class Agent(_Model):
    """One voice agent: what it says, how it thinks, hears and sounds."""

    id: AgentId
    name: str = Field(..., min_length=1, max_length=100)
    first_message: str | None = Field(None, max_length=MAX_FIRST_MESSAGE)
    """Spoken first; placeholders ``{name}``/``{contact_name}``/``<name>``/``<contact_name>``.
    When absent the LLM generates an opener."""
    system_prompt: str = Field(..., min_length=1, max_length=MAX_SYSTEM_PROMPT)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    tts: TTSConfig
    stt: STTConfig = Field(default_factory=STTConfig)
    fallbacks: Fallbacks = Field(default_factory=Fallbacks)
    """Ordered fallbacks per kind (``fallbacks: {llm: [{model: gpt-4o}]}``), used when the
    primary provider fails; with none left the caller hears a short apology and the call ends
    ``failed`` / ``provider_error``."""
    knowledge_base_ids: tuple[KnowledgeBaseId, ...] = ()
    tools: tuple[Literal["end_call", "send_dtmf"], ...] = ("end_call",)
    """Built-in tools the LLM may call. ``end_call`` lets the agent hang up; ``send_dtmf`` lets it
    press keys on a phone call (navigating an IVR). ``transfer_call`` is offered on phone calls
    whenever :attr:`transfers` is not empty."""
    limits: CallLimits = Field(default_factory=CallLimits)
    voicemail: Voicemail | None = None
    """Answering-machine detection on outbound calls (None: every answer is greeted at once)."""
    transfers: tuple[TransferDestination, ...] = ()
    """Where the agent may transfer a phone call (its ``transfer_call`` tool)."""

    @field_validator("transfers")
    @classmethod
    def _unique_transfer_names(
        cls, transfers: tuple[TransferDestination, ...]
    ) -> tuple[TransferDestination, ...]:
        names = [t.name for t in transfers]
        if len(set(names)) != len(names):
            raise ValueError("transfer destination names must be unique")
        return transfers

    @field_validator("first_message")
    @classmethod
    def _only_known_placeholders(cls, value: str | None) -> str | None:
        if value is not None and (unknown := unknown_placeholders(value)):
            supported = ", ".join(PLACEHOLDERS)
            raise ValueError(
                f"unknown placeholder {unknown[0]} (it would be spoken as written); "
                f"supported: {supported}"
            )
        return value


class Handoff(_Model):
    """A destination a squad member may transfer the call to."""

    to: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(..., min_length=1, max_length=1_000)
    """What the LLM reads to decide when to hand off (the transfer tool's description)."""


class SquadMember(_Model):
    """A member of a squad: an agent, its member-level overrides and where it may hand off."""

    agent_id: AgentId
    overrides: dict[str, object] = Field(default_factory=dict)
    """Same shape as a call's ``agent_overrides``; applied before the call's overrides."""
    handoffs: tuple[Handoff, ...] = ()


class Squad(_Model):
    """A workforce: agents that hand off to each other mid-call (outbound phone calls only)."""

    id: SquadId
    name: str = Field(..., min_length=1, max_length=100)
    start_member: str
    members: dict[str, SquadMember] = Field(..., min_length=1)
    context_policy: Literal["all", "last_n", "none"] = "all"
    context_last_n: int = Field(6, ge=1, le=200)
    max_handoffs: int = Field(8, ge=1, le=100)

    @field_validator("members")
    @classmethod
    def _member_keys(cls, members: dict[str, SquadMember]) -> dict[str, SquadMember]:
        for key in members:
            if not _MEMBER_KEY.fullmatch(key):
                raise ValueError(
                    f"member key {key!r} must be lowercase a-z, digits and _, at most 52 characters"
                )
        return members

    def problems(self) -> list[tuple[str, str]]:
        """``(field, problem)`` for members that do not resolve within the squad."""
        out: list[tuple[str, str]] = []
        if self.start_member not in self.members:
            out.append(
                (
                    "start_member",
                    f"{self.start_member!r} is not a member (members: {', '.join(self.members)})",
                )
            )
        for key, member in self.members.items():
            for i, handoff in enumerate(member.handoffs):
                where = f"members.{key}.handoffs[{i}].to"
                if handoff.to == key:
                    out.append((where, "a member cannot hand off to itself"))
                elif handoff.to not in self.members:
                    out.append((where, f"destination {handoff.to!r} is not a member"))
        return out


class SipTrunk(_Model):
    """Where outbound calls from a number go: a SIP trunk (provisioned in LiveKit as outbound)."""

    address: str = Field(..., min_length=3, max_length=255)
    """Host or host:port of the carrier's SIP endpoint."""
    transport: Literal["udp", "tcp", "tls"] = "udp"
    auth_username: str | None = None
    auth_password_env: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]*$")
    """Name of the environment variable holding the trunk password (never the password itself)."""
    trunk_id: str | None = Field(None, pattern=r"^ST_[A-Za-z0-9]+$")
    """An already provisioned LiveKit outbound trunk id; when absent it is provisioned by name."""


class PhoneNumber(_Model):
    """A Convoi-managed number calls are placed from."""

    id: PhoneNumberId
    number: E164
    label: str = ""
    sip: SipTrunk


class KnowledgeBase(_Model):
    """A knowledge base an agent can draw on."""

    id: KnowledgeBaseId
    name: str = Field(..., min_length=1, max_length=100)
    description: str = ""
    documents: str | None = Field(None, min_length=1, max_length=255)
    """Folder of the knowledge base's Markdown (``.md``) and text (``.txt``) files, relative to
    ``agents_config/`` (e.g. ``knowledge/help_centre``). The worker indexes them (``convoi-worker
    index``, or at start-up when they changed) and gives the LLM the chunks that match each
    caller turn. None: the knowledge base has no documents (nothing is retrieved)."""

    @field_validator("documents")
    @classmethod
    def _relative_folder(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith(("/", "\\")) or ".." in value.split("/")):
            raise ValueError("must be a folder inside agents_config/ (relative, without '..')")
        return value


class Definitions(_Model):
    """Everything in ``agents_config/``, with every reference resolved."""

    agents: dict[str, Agent]
    squads: dict[str, Squad]
    phone_numbers: dict[str, PhoneNumber]
    knowledge_bases: dict[str, KnowledgeBase]
    prices: PriceList

    def summary(self) -> dict[str, int]:
        """Counts per kind, for the check-config table."""
        return {
            "agents": len(self.agents),
            "squads": len(self.squads),
            "phone_numbers": len(self.phone_numbers),
            "knowledge_bases": len(self.knowledge_bases),
        }
