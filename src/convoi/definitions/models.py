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
from convoi.definitions.providers import LLMConfig, STTConfig, TTSConfig
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
    knowledge_base_ids: tuple[KnowledgeBaseId, ...] = ()
    tools: tuple[Literal["end_call"], ...] = ("end_call",)
    """Built-in tools the LLM may call. ``end_call`` lets the agent hang up."""
    limits: CallLimits = Field(default_factory=CallLimits)

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
