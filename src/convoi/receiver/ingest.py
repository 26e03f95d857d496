"""Handling of one event POST, independent of the web framework (aiohttp here, FastAPI later).

Order of checks: signature (401), body is a valid :class:`CallEvent` (422), the path's call id and
the ``Convoi-Event-Id`` header (when sent) match the body (422), then store, de-duplicating by
event id: a new event answers 201 ``{"status": "stored"}``, a known id 200
``{"status": "duplicate"}`` (idempotent; nothing is applied twice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from convoi.receiver.store import ReceiverStore
from convoi.reporting.events import CallEvent
from convoi.reporting.signing import (
    DEFAULT_TOLERANCE,
    EVENT_ID_HEADER,
    SignatureError,
    verify,
)

__all__ = ["IngestResult", "ingest_event"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The HTTP answer to give: status code and JSON payload."""

    status_code: int
    payload: dict[str, Any] = field(default_factory=dict)


def _get_header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def ingest_event(
    store: ReceiverStore,
    secrets: Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    path_call_id: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> IngestResult:
    """Verify, validate and store one event POSTed to ``/internal/v1/calls/{path_call_id}/events``.

    ``secrets``: every secret currently accepted (rotation). ``body``: the raw request bytes.
    """
    try:
        verify(secrets, headers, body, now=now, tolerance=tolerance)
    except SignatureError as exc:
        return IngestResult(
            401, {"error": "invalid_signature", "reason": exc.reason, "detail": exc.message}
        )
    try:
        event = CallEvent.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        return IngestResult(422, {"error": "invalid_event", "detail": errors})
    if event.call_id != path_call_id:
        return IngestResult(
            422, {"error": "call_id_mismatch", "detail": "path call_id differs from the body's"}
        )
    header_id = _get_header(headers, EVENT_ID_HEADER)
    if header_id is not None and header_id.strip() != event.id:
        return IngestResult(
            422, {"error": "event_id_mismatch", "detail": f"{EVENT_ID_HEADER} differs from id"}
        )
    outcome = store.record(event, body.decode("utf-8"))
    if outcome == "duplicate":
        return IngestResult(200, {"status": "duplicate", "id": event.id})
    return IngestResult(201, {"status": "stored", "id": event.id})
