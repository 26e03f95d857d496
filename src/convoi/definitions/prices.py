"""The price list (``agents_config/prices.yaml``): what each unit of usage costs, in USD.

Prices are :class:`~decimal.Decimal` (write them as strings in YAML to keep them exact). Every
field is required and non-negative, so a typo or a missing price fails ``check-config``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LLMPrice", "Money", "PriceList", "STTPrice", "TTSPrice", "TelephonyPrice"]

Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=10)]


class _Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMPrice(_Price):
    """USD per 1M tokens."""

    input_per_1m: Money
    cached_input_per_1m: Money
    output_per_1m: Money


class STTPrice(_Price):
    """USD per minute of audio streamed to the recogniser."""

    per_minute: Money


class TTSPrice(_Price):
    """USD per 1,000 characters synthesised."""

    per_1k_chars: Money


class TelephonyPrice(_Price):
    """USD per minute of a phone call (from answer)."""

    per_minute: Money


class PriceList(_Price):
    """Prices per provider and model. A model missing here is reported as unpriced, not free."""

    currency: Literal["USD"] = "USD"
    llm: dict[str, dict[str, LLMPrice]]
    stt: dict[str, dict[str, STTPrice]]
    tts: dict[str, dict[str, TTSPrice]]
    telephony: TelephonyPrice
    platform_fee_per_minute: Money = Decimal(0)

    def has_llm(self, provider: str, model: str) -> bool:
        """True when an LLM model has a price."""
        return model in self.llm.get(provider, {})

    def has_stt(self, provider: str, model: str) -> bool:
        """True when an STT model has a price."""
        return model in self.stt.get(provider, {})

    def has_tts(self, provider: str, model: str) -> bool:
        """True when a TTS model has a price."""
        return model in self.tts.get(provider, {})
