"""Request and response bodies of the Calls API, with the seed's field descriptions.

``CallCreate`` is the request (``POST /api/v1/public/calls``). It checks JSON types only; every
rule (id prefixes, E.164, agent_id/squad_id, overrides) is the CallSpec's, applied when the
CallSpec the worker will receive is built (:mod:`convoi.controlplane.calls`).

Responses: ``WebCallPublic`` / ``PhoneCallPublic`` are the 201 bodies, exactly the seed's fields;
``WebCall`` / ``PhoneCall`` (GET) add extensions — ``ended_reason``, ``fault``, ``detail`` and, for
phone calls, ``transfer`` and ``voicemail`` (the worker's ``call.ended`` reports) — and never
repeat the token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from convoi.lifecycle import CallStatus, Fault
from convoi.reporting.events import (
    Handoff,
    TranscriptEntry,
    TransferReport,
    TurnLatency,
    VoicemailReport,
)

__all__ = [
    "CallCreate",
    "CallCreated",
    "CallRead",
    "CostPublic",
    "CostRead",
    "CustomerCreate",
    "CustomerPublic",
    "ErrorDetail",
    "ErrorResponse",
    "LiveKitAccess",
    "LiveKitSession",
    "PhoneCall",
    "PhoneCallPublic",
    "WebCall",
    "WebCallPublic",
]

OVERRIDES_TEXT = (
    "Per-call overrides: first_message, system_prompt, llm, tts, stt, knowledge_base_ids, and "
    "(a Convoi extension) limits: max_duration_seconds, silence_timeout_seconds, silence_prompt, "
    "silence_goodbye, wrap_up_message, wrap_up_seconds. Tweaks the agent for this call only, "
    "without editing the agent itself; unknown keys are rejected (422)."
)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    PlainSerializer(_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-06-05T10:00:00Z"}),
]
"""UTC, whole seconds, ``Z`` suffix (``2026-06-05T10:00:00Z``)."""


# ------------------------------------------------------------------------------ request


class CustomerCreate(BaseModel):
    """Who is called (``outbound_phone``)."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(
        description="E.164 (e.g. +971501234567).",
        json_schema_extra={"pattern": r"^\+[1-9][0-9]{6,14}$", "example": "+971501234567"},
    )
    name: str | None = Field(
        None,
        description="Display name for transcripts and dashboards. Substitutes {name} / "
        '{contact_name} placeholders in the greeting (falls back to "there").',
    )
    metadata: dict[str, Any] | None = Field(None, description="Free-form per-customer attributes.")


class CallCreate(BaseModel):
    """Create a web call or an outbound phone call."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["web", "outbound_phone"] = Field(
        description='"web" connects a browser participant to a Convoi agent over LiveKit; '
        '"outbound_phone" dials an E.164 number from one of your provisioned Convoi numbers.'
    )
    agent_id: str | None = Field(
        None,
        description="An agent on your account (agt_…). For outbound_phone, an agent id (agt_…) "
        "or a workforce id (sqd_…): the API tells them apart by their prefix. Provide either "
        "agent_id or squad_id. A sqd_… id with type web returns 422: web calls are single-agent.",
        json_schema_extra={"pattern": r"^(agt|sqd)_[a-z0-9]{4,64}$"},
    )
    squad_id: str | None = Field(
        None,
        description="Alternative place to pass a workforce id (sqd_…); outbound_phone only.",
        json_schema_extra={"pattern": r"^sqd_[a-z0-9]{4,64}$"},
    )
    participant_name: str | None = Field(
        None, description="Display name for the participant in LiveKit (web calls)."
    )
    phone_number_id: str | None = Field(
        None,
        description="ID of one of your Convoi-managed numbers (phn_…); required for "
        "outbound_phone.",
        json_schema_extra={"pattern": r"^phn_[a-z0-9]{4,64}$"},
    )
    customer: CustomerCreate | None = Field(
        None, description="The person called; required for outbound_phone (customer.number)."
    )
    agent_overrides: dict[str, Any] | None = Field(None, description=OVERRIDES_TEXT)
    metadata: dict[str, Any] | None = Field(
        None,
        description="Free-form key/value pairs (per-call attributes) returned with every call "
        "event.",
    )


# ------------------------------------------------------------------------------ responses


class LiveKitSession(BaseModel):
    """Where the browser participant joins (web calls)."""

    url: str = Field(description="LiveKit server URL; pass it to the LiveKit client SDK.")
    token: str | None = Field(
        description="Participant token. Returned only when the call is created (and by an "
        "idempotent replay of that response); null when the call is read back with GET."
    )
    participant_identity: str = Field(description='The participant\'s identity ("public-…").')


class LiveKitAccess(LiveKitSession):
    """What the browser needs to join the call."""

    token: str = Field(
        description="Participant token (JWT) that may join this call's room only; pass it with "
        "livekit.url to the LiveKit client SDK. The agent joins as soon as the participant does."
    )


class CostPublic(BaseModel):
    """Cost so far (final once the call has ended)."""

    amount: float = Field(
        description="USD, rounded to 6 decimals for display (exact decimals are kept internally); "
        "updates as the call progresses."
    )
    currency: Literal["USD"] = "USD"


class CustomerPublic(BaseModel):
    """The number called. Name and metadata are not echoed (they reach the agent, not replies)."""

    number: str = Field(description="E.164 number dialled.")


class _CallHead(BaseModel):
    id: str = Field(description="Call id (call_…).", examples=["call_01HXJ5T0RZ7Q1V3W9M2K8B6N4D"])
    object: Literal["call"] = "call"
    type: Literal["web", "outbound_phone"]
    status: CallStatus = Field(
        description='Begins at "initiated" and transitions through "active" (phone calls may '
        'pass "ringing") to "completed" or one of the terminal failure states: busy, no_answer, '
        "failed, canceled."
    )
    agent_id: str | None = Field(
        description="The agent running the call; null for workforce calls."
    )


class _PhoneParty(BaseModel):
    squad_id: str | None = Field(
        description="The workforce running the call; null for single-agent calls."
    )
    phone_number_id: str = Field(description="The Convoi number the call is placed from.")
    customer: CustomerPublic


class _CallTail(BaseModel):
    room_id: str = Field(
        description="Name of the call's LiveKit room. Phone calls have one too (the customer is "
        "dialled into it), so room_id is set for every call type."
    )
    livekit: LiveKitAccess | None
    duration_seconds: float = Field(
        description="Seconds since the call became active; updates as the call progresses."
    )
    cost: CostPublic
    metadata: dict[str, Any] = Field(
        description="The metadata sent with the request ({} if none); returned with every event."
    )
    created_at: Timestamp
    updated_at: Timestamp


class WebCallPublic(_CallTail, _CallHead):
    """A web call, as returned by ``POST /api/v1/public/calls`` (201)."""

    type: Literal["web"]
    livekit: LiveKitAccess


class PhoneCallPublic(_CallTail, _PhoneParty, _CallHead):
    """An outbound phone call, as returned by ``POST /api/v1/public/calls`` (201)."""

    type: Literal["outbound_phone"]
    livekit: None = Field(description="Always null: nobody joins a phone call with a token.")


_ENDED_REASON_TEXT = (
    "Extension (not in the seed): why the call ended, once terminal; null before. E.g. "
    "customer_hangup, agent_hangup, silence_timeout, max_duration, voicemail, dial_busy, "
    "dial_no_answer, dial_failed, participant_never_joined, invalid_request, provider_error, "
    "worker_error, worker_lost (the control plane heard nothing from the worker for the "
    "call's lease), api_hangup (ended with POST /api/v1/public/calls/{id}/end)."
)


class _Outcome(BaseModel):
    """Extensions of the GET body (not in the seed): how the call ended, and why."""

    ended_reason: str | None = Field(description=_ENDED_REASON_TEXT)
    fault: Fault | None = Field(
        None,
        description="Extension: whose side made the call not succeed (customer, provider, "
        "platform, config); null for normal endings and before the end.",
    )
    detail: str | None = Field(
        None,
        description="Extension: what a human can act on, e.g. the SIP status of a refused call "
        "or the field of an invalid request; null when there is nothing to add.",
    )


_SECRET_ONLY = (
    " Secret keys only: null with a publishable key (pk_live_), and null in GET "
    "/api/v1/public/calls (read the call)."
)


class CostRead(CostPublic):
    """Cost so far (final once the call has ended), with its breakdown (GET)."""

    by_component: dict[str, float] | None = Field(
        None,
        description="Extension: USD per component (llm, stt, tts, telephony, platform), from the "
        "worker's latest report; {} before the first one." + _SECRET_ONLY,
        examples=[{"llm": 0.0012, "stt": 0.0008, "tts": 0.0021, "platform": 0.005}],
    )
    by_member: dict[str, float] | None = Field(
        None,
        description="Extension: USD of model usage per squad member (agent for single-agent "
        "calls)." + _SECRET_ONLY,
        examples=[{"agent": 0.0041}],
    )
    unpriced: list[str] | None = Field(
        None,
        description="Extension: usage lines with no price in the price list (their cost is not "
        "in amount)." + _SECRET_ONLY,
    )


class _Report(BaseModel):
    """Extensions of the GET body from the worker's call.ended report (secret keys only)."""

    cost: CostRead
    transcript: list[TranscriptEntry] | None = Field(
        None,
        description="Extension: what was said, oldest first: role (user: the caller, assistant: "
        "the agent), text, at (Unix time), member (the squad member speaking; agent for "
        "single-agent calls), interrupted, source (voice or dtmf). Null until the call has "
        "ended (and when it ended without the worker's report)." + _SECRET_ONLY,
    )
    handoffs: list[Handoff] | None = Field(
        None,
        description="Extension: transfers between squad members (from_member, to_member, "
        "reason, at); [] when there were none; null until the call has ended." + _SECRET_ONLY,
    )
    latency: list[TurnLatency] | None = Field(
        None,
        description="Extension: one entry per agent turn (seconds): e2e_latency (end of the "
        "caller's speech to the agent's first audio), transcription_delay, end_of_turn_delay, "
        "llm_node_ttft, tts_node_ttfb, retrieval_seconds, with the member; null until the "
        "call has ended." + _SECRET_ONLY,
    )


class _PhoneOutcome(_Outcome):
    transfer: TransferReport | None = Field(
        None,
        description="Extension: the call's transfer to a human (destination, cold or warm, "
        "whether it succeeded); null when none was attempted.",
    )
    voicemail: VoicemailReport | None = Field(
        None,
        description="Extension: answering-machine detection (verdict, seconds it held the "
        "greeting, what the agent did); null when the agent does not detect.",
    )


class WebCall(_Report, _Outcome, WebCallPublic):
    """A web call, as read back by ``GET /api/v1/public/calls/{id}``."""

    # read back without the join token: deliberately wider than the 201 body's LiveKitAccess
    livekit: LiveKitSession  # type: ignore[assignment]


class PhoneCall(_Report, _PhoneOutcome, PhoneCallPublic):
    """An outbound phone call, as read back by ``GET /api/v1/public/calls/{id}``."""


CallCreated = Annotated[WebCallPublic | PhoneCallPublic, Field(discriminator="type")]
CallRead = Annotated[WebCall | PhoneCall, Field(discriminator="type")]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Machine-readable, e.g. invalid_request, invalid_api_key.")
    message: str = Field(description="Human-readable, naming the field at fault.")
    field: str | None = Field(
        description="Dotted path of the body field (customer.number), or the header "
        "(Authorization, Idempotency-Key) at fault; null when no single field is."
    )


class ErrorResponse(BaseModel):
    """Body of every 4xx and 5xx answer."""

    error: ErrorDetail
