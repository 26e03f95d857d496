"""Which models of an agent the price list does not price (pure: no I/O).

A call whose LLM, STT or TTS model has no price would be billed without that part, so an unpriced
model is refused everywhere, by this one check: when the definitions load (an agent file, a squad
member's overrides: :mod:`convoi.definitions.loader`), and when a call is resolved
(:func:`convoi.callspec.resolve_call`: the control plane answers 422, the worker ends the job
``failed`` / ``invalid_request``). Fallback models (``fallbacks.llm[0]`` ...) are checked like the
primary ones: any of them may serve the call. To use a new model, price it in
``agents_config/prices.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator

from convoi.definitions.models import Agent
from convoi.definitions.prices import PriceList
from convoi.definitions.providers import LLMConfig, STTConfig, TTSConfig
from convoi.validation import Issue

__all__ = ["BLOCKS", "Block", "priced_blocks", "unpriced_models"]

Block = LLMConfig | STTConfig | TTSConfig
"""A provider block: each has ``provider`` and ``model``."""

BLOCKS = ("llm", "stt", "tts")
"""The priced blocks of an agent; each has ``provider`` and ``model``."""


def priced_blocks(agent: Agent) -> Iterator[tuple[str, str, Block]]:
    """(kind, where, block) for every block that may serve a call: the primary ones
    (``llm``), then the fallbacks in order (``fallbacks.llm[0]``)."""
    for kind in BLOCKS:
        yield kind, kind, getattr(agent, kind)
        for i, block in enumerate(getattr(agent.fallbacks, kind)):
            yield kind, f"fallbacks.{kind}[{i}]", block


def unpriced_models(agent: Agent, prices: PriceList) -> list[Issue]:
    """One issue per block whose model has no price, under ``llm.model`` / ``stt.model`` /
    ``fallbacks.llm[0].model`` ...

    The problem names the model and the priced alternatives of the same provider.
    """
    issues = []
    for kind, where, block in priced_blocks(agent):
        provider, model = block.provider, block.model
        table = getattr(prices, kind).get(provider, {})
        if model in table:
            continue
        priced = ", ".join(sorted(table)) or "none"
        issues.append(
            Issue(
                f"{where}.model",
                f"{provider}/{model} has no price in the price list; "
                f"priced {provider} {kind} models: {priced}",
            )
        )
    return issues
