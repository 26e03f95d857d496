"""What a call's session produced: transcript, per-turn latency and usage, by squad member.

:class:`SessionRecorder` listens to the AgentSession's events; the reporter reads it when the call
ends (and for progress events).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from livekit.agents import AgentSession, llm

from convoi.callspec import ResolvedCall
from convoi.reporting.events import Handoff, TranscriptEntry, TurnLatency, UsageEntry
from convoi.reporting.usage import UsageTracker
from convoi.worker import metrics as worker_metrics

__all__ = ["SessionRecorder"]

_USER_METRICS = ("transcription_delay", "end_of_turn_delay")
_AGENT_METRICS = ("e2e_latency", "llm_node_ttft", "tts_node_ttfb")


class SessionRecorder:
    """Transcript, latency and usage of one call, attributed to the member speaking."""

    def __init__(self, session: AgentSession[Any], call: ResolvedCall) -> None:
        self._session = session
        self._call = call
        self.transcript: list[TranscriptEntry] = []
        self.latency: list[TurnLatency] = []
        self._last_user_metrics: dict[str, float] = {}
        self.usage = UsageTracker(
            {k: m.agent for k, m in call.members.items()},
            self.current_member,
            stt_seconds=lambda: dict(session.userdata.stt_audio_seconds),
            extra_tts_characters=lambda: dict(session.userdata.extra_tts_characters),
        )
        session.on("metrics_collected", lambda ev: self.usage.add(ev.metrics))
        session.on("conversation_item_added", self._on_item)

    def current_member(self) -> str:
        """The member key of the agent in charge now (``agent`` for single-agent calls)."""
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return self._call.start
        return (
            agent.id if agent is not None and agent.id in self._call.members else self._call.start
        )

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        member = self.current_member()
        self.transcript.append(
            TranscriptEntry(
                role=item.role,
                text=item.text_content or "",
                at=item.created_at,
                member=member if item.role == "assistant" else None,
                interrupted=bool(item.interrupted),
            )
        )
        metrics = dict(item.metrics or {})
        if item.role == "user":
            self._last_user_metrics = {k: metrics[k] for k in _USER_METRICS if k in metrics}
            return
        agent_metrics = {k: metrics[k] for k in _AGENT_METRICS if k in metrics}
        worker_metrics.observe_turn_latency(agent_metrics.get("e2e_latency"))
        if agent_metrics or self._last_user_metrics:
            self.latency.append(
                TurnLatency(member=member, **self._last_user_metrics, **agent_metrics)
            )
        self._last_user_metrics = {}

    def usage_entries(self) -> list[UsageEntry]:
        """Usage so far, per member and model."""
        return self.usage.entries()

    def handoffs(self) -> list[Handoff]:
        """Handoffs between squad members so far (empty for single-agent calls)."""
        squad = getattr(self._session.userdata, "squad", None)
        if squad is None:
            return []
        return [Handoff(**dataclasses.asdict(record)) for record in squad.handoffs]
