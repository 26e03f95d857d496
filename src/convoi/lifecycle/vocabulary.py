"""The status vocabulary of a call: the words every package uses to say where a call is.

These are the values of ``status``, ``ended_reason`` and ``fault`` on the wire (see
:class:`convoi.reporting.events.CallEvent`), in the control plane's API and in the lifecycle state
machine (:mod:`convoi.lifecycle.status`, which also documents what each one means and which
transitions are legal). They live here, at the bottom of the package graph, so that everything
may import them and they import nothing.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CallStatus", "EndedReason", "Fault", "TerminalStatus"]

CallStatus = Literal[
    "initiated", "ringing", "active", "completed", "busy", "no_answer", "failed", "canceled"
]
"""Every status a call can be in."""

TerminalStatus = Literal["completed", "busy", "no_answer", "failed", "canceled"]
"""The statuses a call ends in (nothing leaves them)."""

EndedReason = Literal[
    "customer_hangup",
    "agent_hangup",
    "transferred",
    "silence_timeout",
    "max_duration",
    "voicemail",
    "dial_busy",
    "dial_no_answer",
    "dial_failed",
    "participant_never_joined",
    "invalid_request",
    "provider_error",
    "worker_shutdown",
    "worker_error",
    "worker_lost",
    "api_hangup",
]
"""Why a call ended; :func:`convoi.lifecycle.classify` maps each to a terminal status and fault."""

Fault = Literal["customer", "provider", "platform", "config"]
"""Whose side made the call not succeed (``None`` for normal endings)."""
