"""What a call cost: usage × the price list, in exact decimals (docs/architecture.md §9). Pure, no I/O.

Formulas (USD; prices from ``agents_config/prices.yaml``, looked up by ``UsageEntry.provider`` and
``UsageEntry.model``, i.e. our provider names ``openai``, ``deepgram``, ``elevenlabs``):

- **LLM**: ``(input_tokens - cached_input_tokens) × input_per_1m / 1e6
  + cached_input_tokens × cached_input_per_1m / 1e6 + output_tokens × output_per_1m / 1e6``.
  livekit-agents' ``input_tokens`` (``prompt_tokens``) *includes* the cached tokens
  (``prompt_cached_tokens``), so the cached ones are taken out of the full-price part and charged
  at the cached price. ``cached_input_tokens > input_tokens`` is inconsistent usage and raises.
- **STT**: ``audio_seconds / 60 × per_minute``.
- **TTS**: ``characters / 1000 × per_1k_chars``.
- **Telephony** (phone calls only): ``duration_seconds / 60 × telephony.per_minute``.
- **Platform fee**: ``duration_seconds / 60 × platform_fee_per_minute``.

``by_component`` always has the five keys ``llm``, ``stt``, ``tts``, ``telephony``, ``platform``;
``by_member`` holds the model costs (llm + stt + tts) per squad member key, for every member that
appears in the usage; ``amount`` is the sum of the components.

A usage line whose model has no price is **not** counted as free: it is listed in
``Cost.unpriced`` (``"llm openai/gpt-9 (billing)"``, once per kind/model/member) and logged as a
warning on the ``convoi.reporting`` logger. It adds 0 to the totals, so when ``unpriced`` is not
empty ``amount`` is a *lower bound* of the real cost.

Arithmetic: :class:`~decimal.Decimal` only, never rounded for storage. Floats (audio seconds,
duration) enter as ``Decimal(repr(x))``, so ``0.1`` is ``0.1``, not ``0.1000000000000000055…``.
Every step is exact except the division by 60 (seconds → minutes), which is done last on each
line and carried to 50 significant digits. Rounding is for display only: :func:`format_usd`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

from convoi.definitions.prices import PriceList
from convoi.reporting.events import Cost, UsageEntry

__all__ = ["COMPONENTS", "DISPLAY_PLACES", "format_usd", "price_call", "unpriced_label"]

logger = logging.getLogger("convoi.reporting")

COMPONENTS: Final[tuple[str, ...]] = ("llm", "stt", "tts", "telephony", "platform")
"""The keys of ``Cost.by_component``, always all present."""

DISPLAY_PLACES: Final = 4
"""Decimal places :func:`format_usd` shows by default (1/100 of a cent)."""

_CONTEXT: Final = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_ZERO: Final = Decimal(0)
_SECONDS_PER_MINUTE: Final = Decimal(60)
_TOKENS_PER_PRICE: Final = Decimal(1_000_000)
_CHARS_PER_PRICE: Final = Decimal(1_000)


def price_call(
    usage: Sequence[UsageEntry],
    prices: PriceList,
    *,
    duration_seconds: Decimal | float,
    telephony: bool,
) -> Cost:
    """The cost of a call (so far) from its model usage and duration.

    ``duration_seconds`` counts from ``active`` (see :mod:`convoi.lifecycle`); ``telephony`` is
    True for phone calls. Raises :class:`ValueError` for negative or non-finite quantities and
    for ``cached_input_tokens > input_tokens``.
    """
    with localcontext(_CONTEXT):
        duration = _quantity(duration_seconds, "duration_seconds")
        by_component = dict.fromkeys(COMPONENTS, _ZERO)
        by_member: dict[str, Decimal] = {}
        unpriced: list[str] = []
        for entry in usage:
            amount = _price_line(entry, prices)
            by_member.setdefault(entry.member, _ZERO)
            if amount is None:
                label = unpriced_label(entry)
                if label not in unpriced:
                    unpriced.append(label)
                continue
            by_component[entry.kind] += amount
            by_member[entry.member] += amount
        if telephony:
            by_component["telephony"] = _per_minute(duration, prices.telephony.per_minute)
        by_component["platform"] = _per_minute(duration, prices.platform_fee_per_minute)
        total = sum(by_component.values(), _ZERO)
    for label in unpriced:
        logger.warning(
            "unpriced usage %s: no price in agents_config/prices.yaml; the call's cost is a "
            "lower bound",
            label,
        )
    return Cost(amount=total, by_component=by_component, by_member=by_member, unpriced=unpriced)


def unpriced_label(entry: UsageEntry) -> str:
    """How a usage line with no price is named in ``Cost.unpriced``: ``llm openai/gpt-9 (agent)``."""
    return f"{entry.kind} {entry.provider}/{entry.model} ({entry.member})"


def format_usd(amount: Decimal | int, *, places: int = DISPLAY_PLACES) -> str:
    """``amount`` for display: ``$1,234.5678``; rounded half-even to ``places`` decimals.

    Half-even (banker's) rounding, the :mod:`decimal` default, has no upward bias over many
    calls. A negative amount is shown ``-$0.0100``; one that rounds to zero has no sign.
    """
    if places < 0:
        raise ValueError(f"places must be >= 0, got {places}")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"cannot format {amount!r} as money")
    with localcontext(_CONTEXT) as ctx:
        ctx.prec = max(_CONTEXT.prec, value.adjusted() + places + 2)
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.{places}f}"


def _price_line(entry: UsageEntry, prices: PriceList) -> Decimal | None:
    """The cost of one usage line, or None when its model has no price."""
    if entry.kind == "llm":
        uncached = _count(entry.input_tokens, "input_tokens") - _count(
            entry.cached_input_tokens, "cached_input_tokens"
        )
        output = _count(entry.output_tokens, "output_tokens")
        if uncached < 0:
            raise ValueError(
                f"{unpriced_label(entry)}: cached_input_tokens ({entry.cached_input_tokens}) > "
                f"input_tokens ({entry.input_tokens}); input_tokens must include the cached ones"
            )
        llm = prices.llm.get(entry.provider, {}).get(entry.model)
        if llm is None:
            return None
        return (
            uncached * llm.input_per_1m
            + entry.cached_input_tokens * llm.cached_input_per_1m
            + output * llm.output_per_1m
        ) / _TOKENS_PER_PRICE
    if entry.kind == "stt":
        seconds = _quantity(entry.audio_seconds, "audio_seconds")
        stt = prices.stt.get(entry.provider, {}).get(entry.model)
        return None if stt is None else _per_minute(seconds, stt.per_minute)
    characters = _count(entry.characters, "characters")
    tts = prices.tts.get(entry.provider, {}).get(entry.model)
    return None if tts is None else characters * tts.per_1k_chars / _CHARS_PER_PRICE


def _per_minute(seconds: Decimal, per_minute: Decimal) -> Decimal:
    # Multiply first (exact), divide once: the only inexact step in this module.
    return seconds * per_minute / _SECONDS_PER_MINUTE


def _count(value: int, what: str) -> int:
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _quantity(value: Decimal | float, what: str) -> Decimal:
    """A non-negative finite quantity as an exact Decimal (floats via their shortest repr)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(f"{what} must be finite, got {value!r}")
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return number
