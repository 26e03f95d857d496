"""Messages the control plane sends to a call's job through its LiveKit room.

``POST /api/v1/public/calls/{id}/end`` asks LiveKit's server API (``SendData``) to publish a
reliable data packet on :data:`TOPIC` in the call's room; the job listens for it
(:mod:`convoi.worker.remote_end`). Packets sent through the server API carry no sender
participant, which is how the job tells them from anything a room participant could publish on
the same topic. The body is small JSON: ``{"action": "end", "call_id": "call_…"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["TOPIC", "EndRequest", "encode_end", "parse_end"]

TOPIC = "convoi.control"


@dataclass(frozen=True, slots=True)
class EndRequest:
    """End the call ``call_id`` (its agent finishes the sentence it is saying)."""

    call_id: str


def encode_end(call_id: str) -> bytes:
    """The packet that asks the job of ``call_id`` to end its call."""
    return json.dumps({"action": "end", "call_id": call_id}).encode("utf-8")


def parse_end(data: bytes) -> EndRequest | None:
    """The end request in ``data``, or None if it is not one (never raises)."""
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("action") != "end":
        return None
    call_id = message.get("call_id")
    return EndRequest(call_id) if isinstance(call_id, str) else None
