"""Call rows → response bodies (the seed's shapes; see :mod:`convoi.controlplane.schemas`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from convoi.controlplane.db.models import Call
from convoi.controlplane.schemas import PhoneCall, PhoneCallPublic, WebCall, WebCallPublic
from convoi.controlplane.settings import ControlPlaneSettings

__all__ = ["amount_number", "created_body", "read_model"]

_MICRO = Decimal("0.000001")


def amount_number(amount: str) -> float:
    """The exact decimal string as a JSON number, rounded to 6 decimals (half even)."""
    try:
        return float(Decimal(amount).quantize(_MICRO, rounding=ROUND_HALF_EVEN))
    except InvalidOperation:
        return float(amount)


def _fields(call: Call, settings: ControlPlaneSettings, token: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": call.id,
        "object": "call",
        "type": call.type,
        "status": call.status,
        "agent_id": call.agent_id,
        "room_id": call.room_id,
        "livekit": None,
        "duration_seconds": call.duration_seconds,
        "cost": {"amount": amount_number(call.cost_amount), "currency": "USD"},
        "metadata": call.call_metadata or {},
        "created_at": call.created_at,
        "updated_at": call.updated_at,
        "ended_reason": call.ended_reason,
        "fault": call.fault,
        "detail": call.detail,
    }
    if call.type == "web":
        data["livekit"] = {
            "url": settings.public_livekit_url,
            "token": token,
            "participant_identity": call.participant_identity,
        }
    else:
        data["squad_id"] = call.squad_id
        data["phone_number_id"] = call.phone_number_id
        data["customer"] = {"number": call.customer_number}
        data["transfer"] = call.transfer
        data["voicemail"] = call.voicemail
    return data


def created_body(call: Call, settings: ControlPlaneSettings, token: str | None) -> str:
    """The 201 body (exact JSON text, also stored for idempotent replays)."""
    data = _fields(call, settings, token)
    for extension in ("ended_reason", "fault", "detail", "transfer", "voicemail"):
        data.pop(extension, None)  # the seed's 201 body has none of them
    model = WebCallPublic if call.type == "web" else PhoneCallPublic
    return model.model_validate(data).model_dump_json()


def read_model(
    call: Call, settings: ControlPlaneSettings, report: Mapping[str, Any] | None = None
) -> WebCall | PhoneCall:
    """The GET body: current state, the extensions (``ended_reason``, ``fault``, ``detail``,
    ``transfer``, ``voicemail``) included, no token.

    ``report`` (:func:`convoi.controlplane.call_report.call_report`, secret keys only) adds the
    cost breakdown, transcript, handoffs and latency; without it they are null."""
    model = WebCall if call.type == "web" else PhoneCall
    data = _fields(call, settings, None)
    if report:
        data["cost"] = {**data["cost"], **report.get("cost", {})}
        data.update({k: v for k, v in report.items() if k != "cost"})
    return model.model_validate(data)
