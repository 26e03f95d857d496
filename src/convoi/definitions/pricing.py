"""Which models of an agent the price list does not price (pure: no I/O).

A call whose LLM, STT or TTS model has no price would be billed without that part, so an unpriced
model is refused everywhere, by this one check: when the definitions load (an agent file, a squad
member's overrides: :mod:`convoi.definitions.loader`), and when a call is resolved
(:func:`convoi.callspec.resolve_call`: the control plane answers 422, the worker ends the job
``failed`` / ``invalid_request``). To use a new model, price it in ``agents_config/prices.yaml``.
"""

from __future__ import annotations

from convoi.definitions.models import Agent
from convoi.definitions.prices import PriceList
from convoi.validation import Issue

__all__ = ["BLOCKS", "unpriced_models"]

BLOCKS = ("llm", "stt", "tts")
"""The priced blocks of an agent; each has ``provider`` and ``model``."""


def unpriced_models(agent: Agent, prices: PriceList) -> list[Issue]:
    """One issue per block whose model has no price, under ``llm.model`` / ``stt.model`` / ...

    The problem names the model and the priced alternatives of the same provider.
    """
    issues = []
    for kind in BLOCKS:
        block = getattr(agent, kind)
        table = getattr(prices, kind).get(block.provider, {})
        if block.model in table:
            continue
        priced = ", ".join(sorted(table)) or "none"
        issues.append(
            Issue(
                f"{kind}.model",
                f"{block.provider}/{block.model} has no price in the price list; "
                f"priced {block.provider} {kind} models: {priced}",
            )
        )
    return issues
