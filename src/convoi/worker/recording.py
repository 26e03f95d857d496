"""What a call's conversation produced: transcript and per-turn latency, by squad member.

:class:`TranscriptRecorder` is fed the session's committed chat messages
(``conversation_item_added``); the call reads it for its final report. Usage is counted
separately, by :class:`convoi.reporting.usage.UsageTracker`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit.agents import llm

from convoi.knowledge.retrieval import RETRIEVAL_EXTRA_KEY
from convoi.reporting.events import TranscriptEntry, TurnLatency
from convoi.worker import metrics as worker_metrics

__all__ = ["DTMF_EXTRA_KEY", "TranscriptRecorder"]

DTMF_EXTRA_KEY = "convoi.dtmf"
"""``ChatMessage.extra`` key marking a user message made of keys the caller pressed (its value:
the digits). The transcript shows such a message as the digits, with ``source`` ``dtmf``."""

_USER_METRICS = ("transcription_delay", "end_of_turn_delay")
_AGENT_METRICS = ("e2e_latency", "llm_node_ttft", "tts_node_ttfb")


class TranscriptRecorder:
    """Transcript and latency of one call, attributed to the member speaking."""

    def __init__(self, current_member: Callable[[], str]) -> None:
        self._current = current_member
        self.transcript: list[TranscriptEntry] = []
        """Spoken messages, in order."""
        self.latency: list[TurnLatency] = []
        """One entry per agent turn that has latency metrics."""
        self._last_user_metrics: dict[str, Any] = {}

    def record(self, item: llm.ChatItem) -> None:
        """Record one committed chat item (only user and assistant messages count)."""
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        member = self._current()
        digits = item.extra.get(DTMF_EXTRA_KEY) if item.role == "user" else None
        self.transcript.append(
            TranscriptEntry(
                role=item.role,
                text=str(digits) if digits else item.text_content or "",
                at=item.created_at,
                member=member if item.role == "assistant" else None,
                interrupted=bool(item.interrupted),
                source="dtmf" if digits else "voice",
            )
        )
        metrics: dict[str, float] = {
            k: float(v) for k, v in dict(item.metrics or {}).items() if isinstance(v, int | float)
        }
        if item.role == "user":
            self._last_user_metrics = {k: metrics[k] for k in _USER_METRICS if k in metrics}
            retrieval = item.extra.get(RETRIEVAL_EXTRA_KEY) or dict(item.metrics or {}).get(
                RETRIEVAL_EXTRA_KEY
            )
            if isinstance(retrieval, dict):  # see convoi.knowledge.retrieval
                self._last_user_metrics.update(retrieval)
            return
        agent_metrics = {k: metrics[k] for k in _AGENT_METRICS if k in metrics}
        worker_metrics.observe_turn_latency(agent_metrics.get("e2e_latency"))
        if agent_metrics or self._last_user_metrics:
            self.latency.append(
                TurnLatency.model_validate(
                    {"member": member, **self._last_user_metrics, **agent_metrics}
                )
            )
        self._last_user_metrics = {}
