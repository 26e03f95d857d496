"""Usage per squad member, from livekit-agents' per-request metrics.

``session.usage`` sums per provider/model, but names providers inconsistently (the OpenAI plugin
reports its base URL's host) and cannot split by squad member. So the tracker listens to
``metrics_collected`` and attributes each LLM/STT/TTS metric to the member speaking at the time,
under the provider and model of that member's own configuration.

STT is billed on the caller audio streamed to the recogniser, counted by the agents as it flows
(:meth:`UsageTracker.add_stt_audio`): the plugin's own audio metrics arrive in 5 s batches and can
land after the call's final report, so they are ignored. Characters synthesised outside the
session (the greeting rendered while a phone rings) are added with
:meth:`UsageTracker.add_tts_characters`.

With fallbacks (``Agent.fallbacks``) a metric is billed to the block whose model it names: the
adapters forward each metric of the instance that served, labelled with that instance's model. A
metric naming no block of the member (or none at all) is billed to the primary block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, cast

from livekit.agents.metrics import LLMMetrics, TTSMetrics

from convoi.definitions.models import Agent
from convoi.definitions.pricing import Block
from convoi.reporting.events import UsageEntry

__all__ = ["UsageKind", "UsageTracker", "serving_block"]

UsageKind = Literal["llm", "stt", "tts"]


def serving_block(agent: Agent, kind: UsageKind, model_name: str | None) -> Block:
    """The block of ``agent`` that a metric labelled ``model_name`` came from: the primary
    block, or the first fallback of that model (the primary when no block has it)."""
    primary: Block = getattr(agent, kind)
    if model_name is None or model_name == primary.model:
        return primary
    fallback: Block
    for fallback in getattr(agent.fallbacks, kind):
        if fallback.model == model_name:
            return fallback
    return primary


@dataclass
class _Counter:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0


class UsageTracker:
    """Accumulates usage per (member, kind, provider, model)."""

    def __init__(self, agents: Mapping[str, Agent], current_member: Callable[[], str]) -> None:
        """``agents``: member key → effective agent definition; ``current_member``: who is
        speaking now (usage reported by the session is attributed to them)."""
        self._agents = agents
        self._current = current_member
        self._counters: dict[tuple[str, str, str, str], _Counter] = {}

    def _counter(self, kind: UsageKind, member: str, model_name: str | None = None) -> _Counter:
        agent = self._agents.get(member)
        if agent is None:
            key = (member, kind, "unknown", model_name or "unknown")
            return self._counters.setdefault(key, _Counter())
        block = serving_block(agent, kind, model_name)
        return self._counters.setdefault((member, kind, block.provider, block.model), _Counter())

    def add(self, metrics: object) -> None:
        """Record one metrics event (other metric types, and STT audio metrics, are ignored)."""
        model_name = getattr(getattr(metrics, "metadata", None), "model_name", None)
        if isinstance(metrics, LLMMetrics):
            c = self._counter("llm", self._current(), model_name)
            c.input_tokens += metrics.prompt_tokens
            c.cached_input_tokens += metrics.prompt_cached_tokens
            c.output_tokens += metrics.completion_tokens
        elif isinstance(metrics, TTSMetrics):
            self._counter("tts", self._current(), model_name).characters += metrics.characters_count

    def add_stt_audio(self, member: str, seconds: float, model_name: str | None = None) -> None:
        """``seconds`` of caller audio were streamed to ``member``'s recogniser (``model_name``:
        the model serving it, when a fallback may be)."""
        self._counter("stt", member, model_name).audio_seconds += seconds

    def add_tts_characters(self, member: str, characters: int) -> None:
        """``characters`` were synthesised for ``member`` outside the session."""
        self._counter("tts", member).characters += characters

    def entries(self) -> list[UsageEntry]:
        """The usage so far, one entry per member and model."""
        return [
            UsageEntry(
                member=member,
                kind=cast(UsageKind, kind),
                provider=provider,
                model=model,
                input_tokens=c.input_tokens,
                cached_input_tokens=c.cached_input_tokens,
                output_tokens=c.output_tokens,
                audio_seconds=round(c.audio_seconds, 6),
                characters=c.characters,
            )
            for (member, kind, provider, model), c in self._counters.items()
        ]
