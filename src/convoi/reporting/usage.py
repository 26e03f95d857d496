"""Usage per squad member, from livekit-agents' per-request metrics.

``session.usage`` sums per provider/model, but names providers inconsistently (the OpenAI plugin
reports its base URL's host) and cannot split by squad member. So the tracker listens to
``metrics_collected`` and attributes each LLM/STT/TTS metric to the member speaking at the time,
under the provider and model of that member's own configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from livekit.agents.metrics import LLMMetrics, STTMetrics, TTSMetrics

from convoi.definitions.models import Agent
from convoi.reporting.events import UsageEntry

__all__ = ["UsageTracker"]


@dataclass
class _Counter:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0


class UsageTracker:
    """Accumulates usage per (member, kind, provider, model)."""

    def __init__(
        self,
        agents: dict[str, Agent],
        current_member: Callable[[], str],
        stt_seconds: Callable[[], dict[str, float]] | None = None,
        extra_tts_characters: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """``stt_seconds`` (member → seconds streamed), when given, replaces the STT plugin's own
        audio metrics, which arrive in batches and can lag the end of a call."""
        self._agents = agents
        self._current = current_member
        self._stt_seconds = stt_seconds
        self._extra_tts = extra_tts_characters
        self._counters: dict[tuple[str, str, str, str], _Counter] = {}

    def _counter(self, kind: str, model_name: str | None) -> _Counter:
        member = self._current()
        agent = self._agents.get(member)
        block = getattr(agent, kind) if agent is not None else None
        provider = block.provider if block is not None else "unknown"
        model = (block.model if block is not None else None) or model_name or "unknown"
        return self._counters.setdefault((member, kind, provider, model), _Counter())

    def add(self, metrics: object) -> None:
        """Record one metrics event (other metric types are ignored)."""
        model_name = getattr(getattr(metrics, "metadata", None), "model_name", None)
        if isinstance(metrics, LLMMetrics):
            c = self._counter("llm", model_name)
            c.input_tokens += metrics.prompt_tokens
            c.cached_input_tokens += metrics.prompt_cached_tokens
            c.output_tokens += metrics.completion_tokens
        elif isinstance(metrics, STTMetrics) and self._stt_seconds is None:
            self._counter("stt", model_name).audio_seconds += metrics.audio_duration
        elif isinstance(metrics, TTSMetrics):
            self._counter("tts", model_name).characters += metrics.characters_count

    def _sync_stt(self) -> None:
        if self._stt_seconds is None:
            return
        for member, seconds in self._stt_seconds().items():
            agent = self._agents.get(member)
            if agent is not None:
                key = (member, "stt", agent.stt.provider, agent.stt.model)
                self._counters.setdefault(key, _Counter()).audio_seconds = seconds

    def entries(self) -> list[UsageEntry]:
        """The usage so far, one entry per member and model."""
        self._sync_stt()
        extra = self._extra_tts() if self._extra_tts is not None else {}
        return [
            UsageEntry(
                member=member,
                kind=kind,  # type: ignore[arg-type]
                provider=provider,
                model=model,
                input_tokens=c.input_tokens,
                cached_input_tokens=c.cached_input_tokens,
                output_tokens=c.output_tokens,
                audio_seconds=round(c.audio_seconds, 6),
                characters=c.characters + (extra.get(member, 0) if kind == "tts" else 0),
            )
            for (member, kind, provider, model), c in self._counters.items()
        ]
