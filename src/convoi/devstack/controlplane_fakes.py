"""An in-memory :class:`~convoi.controlplane.livekit.LiveKitGateway` for tests and demos.

Devstack-only: the control plane never imports it; tests pass it to ``create_app(...,
gateway=...)``.

It records every room, token and dispatch, and can be told to fail the next operations::

    gateway = FakeLiveKitGateway()
    app = create_app(settings, gateway=gateway)
    ...
    assert gateway.dispatches[0].agent_name == "convoi"
    gateway.fail_next("dispatch", LiveKitUnavailable("LiveKit down"))

:func:`signed_event` builds a call event signed like the worker's, to POST to
``/internal/v1/calls/{call_id}/events``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from convoi.controlplane.errors import LiveKitFailure
from convoi.reporting.events import CallEvent
from convoi.reporting.signing import signature_headers

__all__ = ["FakeDispatch", "FakeLiveKitGateway", "FakeToken", "signed_event"]

Operation = Literal["create_room", "dispatch", "delete_room"]


@dataclass(frozen=True)
class FakeDispatch:
    """One recorded CreateAgentDispatch."""

    id: str
    room: str
    agent_name: str
    metadata: str


@dataclass(frozen=True)
class FakeToken:
    """One minted participant token (the token string is ``fake-token:<room>:<identity>``)."""

    room: str
    identity: str
    name: str | None
    ttl_seconds: int

    @property
    def jwt(self) -> str:
        """The string handed out as the token."""
        return f"fake-token:{self.room}:{self.identity}"


@dataclass
class FakeLiveKitGateway:
    """Records instead of calling LiveKit. Thread-safe."""

    rooms: dict[str, int] = field(default_factory=dict)
    """Room name → empty_timeout."""
    deleted_rooms: list[str] = field(default_factory=list)
    tokens: list[FakeToken] = field(default_factory=list)
    dispatches: list[FakeDispatch] = field(default_factory=list)
    sent_data: list[tuple[str, str, bytes]] = field(default_factory=list)
    """Every data packet sent to a room: ``(room, topic, payload)``."""
    closed: bool = False
    latency_s: float = 0.0
    """Each call takes this long (outside the lock), like a LiveKit server over a network."""
    gate: threading.Event | None = None
    """When set, ``create_room`` waits (up to 120 s) until the event is set: LiveKit hangs."""
    waiting: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    """Released once by every ``create_room`` that starts waiting at the gate."""
    _failures: dict[Operation, list[LiveKitFailure]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, operation: Operation, error: LiveKitFailure) -> None:
        """Make the next call of ``operation`` raise ``error``."""
        with self._lock:
            self._failures.setdefault(operation, []).append(error)

    def _wait(self) -> None:
        if self.gate is not None and not self.gate.is_set():
            self.waiting.release()
            self.gate.wait(120)
        if self.latency_s > 0:
            time.sleep(self.latency_s)  # simulated network latency, not synchronisation

    def _maybe_fail(self, operation: Operation) -> None:
        pending = self._failures.get(operation)
        if pending:
            raise pending.pop(0)

    def create_room(self, name: str, *, empty_timeout: int) -> None:
        """Record the room."""
        self._wait()
        with self._lock:
            self._maybe_fail("create_room")
            self.rooms[name] = empty_timeout

    def participant_token(
        self, room: str, identity: str, name: str | None, ttl_seconds: int
    ) -> str:
        """Record and return a recognisable fake token."""
        token = FakeToken(room, identity, name, ttl_seconds)
        with self._lock:
            self.tokens.append(token)
        return token.jwt

    def dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        """Record the dispatch; returns ``AD_<n>``."""
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        with self._lock:
            self._maybe_fail("dispatch")
            dispatch = FakeDispatch(f"AD_{next(self._ids)}", room, agent_name, metadata)
            self.dispatches.append(dispatch)
        return dispatch.id

    def delete_room(self, name: str) -> None:
        """Record the deletion."""
        with self._lock:
            self._maybe_fail("delete_room")
            self.rooms.pop(name, None)
            self.deleted_rooms.append(name)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

    def send_data(self, room: str, topic: str, payload: bytes) -> None:
        """Record the data packet in :attr:`sent_data` (``(room, topic, payload)``)."""
        with self._lock:
            self.sent_data.append((room, topic, payload))


def signed_event(
    secret: str,
    call_id: str,
    sequence: int,
    status: str,
    *,
    event_type: str = "call.status",
    duration_seconds: float = 0.0,
    cost: str = "0",
    ended_reason: str | None = None,
    metadata: dict[str, object] | None = None,
    event_id: str | None = None,
    now: float | None = None,
    **fields: object,
) -> tuple[bytes, dict[str, str]]:
    """A worker-style call event for ``call_id``: (body bytes, signature headers); ``fields``
    are further :class:`~convoi.reporting.events.CallEvent` fields (fault, detail, transfer…)."""
    event = CallEvent.model_validate(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "call_id": call_id,
            "sequence": sequence,
            "type": event_type,
            "created_at": time.time() if now is None else now,
            "status": status,
            "ended_reason": ended_reason,
            "duration_seconds": duration_seconds,
            "cost": {"amount": cost, "currency": "USD"},
            "metadata": metadata,
            **fields,
        }
    )
    body = event.model_dump_json().encode()
    headers = signature_headers(secret, body, event.id, now=now)
    return body, {**headers, "Content-Type": "application/json"}
