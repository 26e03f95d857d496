"""Call events: what the worker reports to the control plane (docs/architecture.md §8).

Every event carries a unique ``id`` (delivery is at least once; receivers de-duplicate by id), the
call's ``sequence`` number (1, 2, 3, … per call, so order is recoverable), the current status and
the call's ``metadata``. ``call.ended`` adds the transcript, handoffs and per-turn latency.

Wire format: JSON of :class:`CallEvent` (``model_dump_json``); money as strings (exact decimals).

The status vocabulary (``CallStatus``, ``EndedReason``, ``Fault``) belongs to
:mod:`convoi.lifecycle`; it is re-exported here because the event fields use it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from convoi.lifecycle import CallStatus, EndedReason, Fault

__all__ = [
    "EVENT_TYPES",
    "CallEvent",
    "CallStatus",
    "Checkpoint",
    "Cost",
    "EndedReason",
    "EventType",
    "Fault",
    "Handoff",
    "HistoryItem",
    "TranscriptEntry",
    "TransferReport",
    "TurnLatency",
    "UsageEntry",
    "VoicemailReport",
]

EventType = Literal["call.status", "call.progress", "call.ended"]
EVENT_TYPES: tuple[EventType, ...] = ("call.status", "call.progress", "call.ended")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cost(_Model):
    """Cost so far (or final), USD, exact decimals; rounded only for display."""

    amount: Decimal
    currency: Literal["USD"] = "USD"
    by_component: dict[str, Decimal] = Field(default_factory=dict)
    """``llm``, ``stt``, ``tts``, ``telephony``, ``platform``."""
    by_member: dict[str, Decimal] = Field(default_factory=dict)
    """Per squad member key (``agent`` for single-agent calls); model costs only."""
    unpriced: list[str] = Field(default_factory=list)
    """Usage lines with no price in the price list, e.g. ``llm openai/gpt-9 (agent)``."""

    @field_serializer("amount")
    def _plain(self, value: Decimal) -> str:
        return _plain_decimal(value)

    @field_serializer("by_component", "by_member")
    def _plain_map(self, value: dict[str, Decimal]) -> dict[str, str]:
        return {k: _plain_decimal(v) for k, v in value.items()}


def _plain_decimal(value: Decimal) -> str:
    """Exact, in plain notation (never ``1.2E-7``), trailing zeros trimmed."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class UsageEntry(_Model):
    """Usage of one model by one member."""

    member: str
    kind: Literal["llm", "stt", "tts"]
    provider: str
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0


class TranscriptEntry(_Model):
    """One spoken message."""

    role: Literal["user", "assistant"]
    text: str
    at: float
    """Unix time the message was committed."""
    member: str | None = None
    interrupted: bool = False
    source: Literal["voice", "dtmf"] = "voice"
    """``dtmf``: keys the caller pressed (``text`` holds the digits, e.g. ``"42#"``)."""


class Handoff(_Model):
    """A transfer between squad members."""

    from_member: str
    to_member: str
    reason: str | None = None
    at: float


class TransferReport(_Model):
    """A phone call handed to someone else (``ended_reason`` ``transferred`` when it succeeded)."""

    destination: str
    """The E.164 number or SIP URI the caller was transferred to."""
    name: str
    """The destination's name in the agent definition."""
    mode: Literal["cold", "warm"]
    at: float
    """Unix time the transfer was asked for."""
    succeeded: bool
    error: str | None = None
    """Why it failed (e.g. the SIP status the far end answered), when it did."""


class VoicemailReport(_Model):
    """Answering-machine detection of an outbound call."""

    verdict: Literal["human", "machine-vm", "machine-ivr", "machine-unavailable", "uncertain"]
    """livekit-agents' AMD category for what answered."""
    reason: str
    """How the verdict was reached (``llm``, ``short_greeting``, ``no_speech_timeout``…)."""
    detection_seconds: float
    """How long detection held the greeting, from the answer to the verdict."""
    action: Literal["greeted", "hung_up", "left_message"]
    """What the agent did with the verdict."""


class TurnLatency(_Model):
    """Per-turn latency from livekit-agents' ``ChatMessage.metrics`` (seconds)."""

    member: str | None = None
    e2e_latency: float | None = None
    transcription_delay: float | None = None
    end_of_turn_delay: float | None = None
    llm_node_ttft: float | None = None
    tts_node_ttfb: float | None = None
    retrieval_seconds: float | None = None
    """Knowledge-base search for the caller's turn (None: the agent has no knowledge bases)."""
    retrieval_chunks: list[str] | None = None
    """Ids of the chunks given to the LLM for the turn (``<file stem>#<section>``)."""
    retrieval_error: str | None = None
    """Why retrieval failed (index missing or corrupt, a timeout): the agent answered without
    context."""


class HistoryItem(_Model):
    """One item of a checkpoint's conversation: a spoken message or a tool call with its output."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    """The message (``user``/``assistant``), or the tool's output (``tool``)."""
    at: float = 0.0
    member: str | None = None
    interrupted: bool = False
    source: Literal["voice", "dtmf"] = "voice"
    name: str | None = None
    """The tool's name (``tool`` only)."""
    arguments: str | None = None
    """The tool call's JSON arguments (``tool`` only)."""
    call_id: str | None = None
    """The tool call's id (``tool`` only)."""
    error: bool = False
    """The tool failed (``tool`` only)."""


class Checkpoint(_Model):
    """What a call carries outside its job process so that another job can resume it."""

    version: Literal[1] = 1
    member: str
    """The squad member in charge (``agent`` for single-agent calls)."""
    initiated_at: float
    started_at: float
    """When the call became active: a resumed call's duration counts from here."""
    usage: list[UsageEntry] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(default_factory=list)
    history: list[HistoryItem] = Field(default_factory=list)
    """The conversation, oldest first (the newest part of it when ``dropped``)."""
    dropped: int = 0
    """Oldest items left out to keep the checkpoint within its size bound."""
    resumes: int = 0
    """How many times the call has been resumed so far."""


class CallEvent(_Model):
    """One event on the wire."""

    id: str
    """Unique (``evt_`` + 32 hex); receivers de-duplicate by it."""
    call_id: str
    sequence: int = Field(..., ge=1)
    type: EventType
    created_at: float
    status: CallStatus
    ended_reason: EndedReason | None = None
    fault: Fault | None = None
    detail: str | None = None
    """Human-readable detail, e.g. the offending field of an invalid request."""
    duration_seconds: float = 0.0
    cost: Cost
    usage: list[UsageEntry] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    transcript: list[TranscriptEntry] | None = None
    handoffs: list[Handoff] | None = None
    latency: list[TurnLatency] | None = None
    transfer: TransferReport | None = None
    """The transfer of a phone call (``call.ended`` only)."""
    voicemail: VoicemailReport | None = None
    """Answering-machine detection of an outbound call (``call.ended`` only)."""
    checkpoint: Checkpoint | None = None
    """Where the conversation stands (``call.progress`` of an active call only; never in
    ``call.ended``): what a new job needs to resume the call (:mod:`convoi.reporting.checkpoint`).
    Customer speech: the control plane keeps the latest only and never logs it."""
