"""Call cost (docs/architecture.md §9): every expected figure is worked out by hand and written as a literal.

Prices in the test list (USD):
  llm openai/gpt-4o-mini   input 0.15 / cached 0.075 / output 0.60 per 1M tokens
  llm openai/gpt-4o        input 2.50 / cached 1.25  / output 10.00 per 1M tokens
  stt deepgram/nova-3      0.0077 per minute
  tts elevenlabs/turbo     0.15 per 1k characters
  telephony                0.013 per minute
  platform fee             0.02 per minute

(check-config rejecting a negative or missing price is covered by
tests/test_definitions.py::test_broken_copy_is_rejected_with_file_field_problem, cases
``negative_price``, ``missing_price_field`` and ``missing_telephony_price``.)
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from convoi.definitions.prices import PriceList
from convoi.reporting.cost import COMPONENTS, format_usd, price_call
from convoi.reporting.events import Cost, UsageEntry

D = Decimal
TURBO = "eleven_turbo_v2_5"


@pytest.fixture
def prices() -> PriceList:
    return PriceList.model_validate(
        {
            "llm": {
                "openai": {
                    "gpt-4o-mini": {
                        "input_per_1m": "0.15",
                        "cached_input_per_1m": "0.075",
                        "output_per_1m": "0.60",
                    },
                    "gpt-4o": {
                        "input_per_1m": "2.50",
                        "cached_input_per_1m": "1.25",
                        "output_per_1m": "10.00",
                    },
                }
            },
            "stt": {"deepgram": {"nova-3": {"per_minute": "0.0077"}}},
            "tts": {"elevenlabs": {TURBO: {"per_1k_chars": "0.15"}}},
            "telephony": {"per_minute": "0.013"},
            "platform_fee_per_minute": "0.02",
        }
    )


def llm(member: str, inp: int, cached: int, out: int, model: str = "gpt-4o-mini") -> UsageEntry:
    return UsageEntry(
        member=member,
        kind="llm",
        provider="openai",
        model=model,
        input_tokens=inp,
        cached_input_tokens=cached,
        output_tokens=out,
    )


def stt(member: str, seconds: float, model: str = "nova-3") -> UsageEntry:
    return UsageEntry(
        member=member, kind="stt", provider="deepgram", model=model, audio_seconds=seconds
    )


def tts(member: str, characters: int, model: str = TURBO) -> UsageEntry:
    return UsageEntry(
        member=member, kind="tts", provider="elevenlabs", model=model, characters=characters
    )


# --- one agent, every component ----------------------------------------------------------------


def test_phone_call_every_component(prices: PriceList) -> None:
    usage = [llm("agent", 12_000, 4_000, 1_500), stt("agent", 90.0), tts("agent", 2_400)]
    cost = price_call(usage, prices, duration_seconds=150, telephony=True)
    # llm: 8,000 uncached × 0.15/1M = 0.0012; 4,000 cached × 0.075/1M = 0.0003;
    #      1,500 out × 0.60/1M = 0.0009 → 0.0024
    # stt: 90 s = 1.5 min × 0.0077 = 0.01155
    # tts: 2,400 chars = 2.4 k × 0.15 = 0.36
    # telephony: 150 s = 2.5 min × 0.013 = 0.0325; platform: 2.5 × 0.02 = 0.05
    assert cost.by_component == {
        "llm": D("0.0024"),
        "stt": D("0.01155"),
        "tts": D("0.36"),
        "telephony": D("0.0325"),
        "platform": D("0.05"),
    }
    assert cost.amount == D("0.45645")
    assert cost.by_member == {"agent": D("0.37395")}
    assert cost.currency == "USD"
    assert cost.unpriced == []


def test_cached_tokens_are_part_of_input_tokens_not_added_to_them(prices: PriceList) -> None:
    # All 1M input tokens cached: 1M × 0.075/1M = 0.075 (not 0.15 + 0.075).
    cost = price_call(
        [llm("agent", 1_000_000, 1_000_000, 0)], prices, duration_seconds=0, telephony=False
    )
    assert cost.by_component["llm"] == D("0.075")
    # None cached: 1M × 0.15/1M = 0.15.
    cost = price_call([llm("agent", 1_000_000, 0, 0)], prices, duration_seconds=0, telephony=False)
    assert cost.by_component["llm"] == D("0.15")


def test_web_call_has_no_telephony_but_pays_the_platform_fee(prices: PriceList) -> None:
    usage = [llm("agent", 12_000, 4_000, 1_500), stt("agent", 90.0), tts("agent", 2_400)]
    cost = price_call(usage, prices, duration_seconds=150, telephony=False)
    assert cost.by_component["telephony"] == D("0")
    assert cost.by_component["platform"] == D("0.05")
    assert cost.amount == D("0.42395")


# --- squads ------------------------------------------------------------------------------------


def test_two_members_split(prices: PriceList) -> None:
    usage = [
        llm("reception", 600, 0, 120),  # 0.00009 + 0.000072 = 0.000162
        tts("reception", 400),  # 0.4 k × 0.15 = 0.06
        llm("billing", 2_000, 1_000, 100),  # 0.00015 + 0.000075 + 0.00006 = 0.000285
        stt("reception", 30.0),  # 0.5 min × 0.0077 = 0.00385
        llm("reception", 400, 0, 80),  # 0.00006 + 0.000048 = 0.000108
        tts("billing", 1_000),  # 0.15
        stt("billing", 60.0),  # 0.0077
    ]
    cost = price_call(usage, prices, duration_seconds=60, telephony=False)
    assert cost.by_member == {
        "reception": D("0.06412"),  # 0.000162 + 0.000108 + 0.06 + 0.00385
        "billing": D("0.157985"),  # 0.000285 + 0.15 + 0.0077
    }
    assert list(cost.by_member) == ["reception", "billing"]  # order of first appearance
    assert cost.by_component == {
        "llm": D("0.000555"),
        "stt": D("0.01155"),
        "tts": D("0.21"),
        "telephony": D("0"),
        "platform": D("0.02"),
    }
    assert cost.amount == D("0.242105")


# --- unpriced usage ----------------------------------------------------------------------------


def test_unpriced_model_is_listed_warned_and_not_counted(
    prices: PriceList, caplog: pytest.LogCaptureFixture
) -> None:
    usage = [
        llm("agent", 1_000, 0, 0),  # 0.00015
        llm("billing", 5_000, 0, 5_000, model="gpt-9"),
        llm("billing", 1_000, 0, 1_000, model="gpt-9"),  # same label: listed once
        stt("billing", 60.0, model="nova-9"),
        UsageEntry(member="agent", kind="tts", provider="cartesia", model=TURBO, characters=10),
    ]
    with caplog.at_level(logging.WARNING, logger="convoi.reporting"):
        cost = price_call(usage, prices, duration_seconds=0, telephony=False)
    assert cost.unpriced == [
        "llm openai/gpt-9 (billing)",
        "stt deepgram/nova-9 (billing)",
        "tts cartesia/eleven_turbo_v2_5 (agent)",
    ]
    assert cost.amount == D("0.00015")
    assert cost.by_member == {"agent": D("0.00015"), "billing": D("0")}
    warnings = [r for r in caplog.records if r.name == "convoi.reporting"]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 3
    messages = "\n".join(r.getMessage() for r in warnings)
    for label in cost.unpriced:
        assert label in messages
    assert "lower bound" in messages


def test_priced_usage_logs_nothing(prices: PriceList, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="convoi.reporting"):
        price_call([llm("agent", 10, 0, 10)], prices, duration_seconds=1, telephony=True)
    assert [r for r in caplog.records if r.name == "convoi.reporting"] == []


# --- edges -------------------------------------------------------------------------------------


def test_zero_usage_is_zero_with_every_component_present(prices: PriceList) -> None:
    cost = price_call([], prices, duration_seconds=0, telephony=True)
    assert cost.amount == D("0")
    assert set(cost.by_component) == {"llm", "stt", "tts", "telephony", "platform"}
    assert list(COMPONENTS) == ["llm", "stt", "tts", "telephony", "platform"]
    assert all(v == D("0") for v in cost.by_component.values())
    assert all(isinstance(v, Decimal) for v in cost.by_component.values())
    assert cost.by_member == {}
    assert cost.unpriced == []


def test_float_inputs_have_no_binary_artefacts() -> None:
    prices = PriceList.model_validate(
        {
            "llm": {},
            "stt": {"deepgram": {"nova-3": {"per_minute": "0.6"}}},
            "tts": {},
            "telephony": {"per_minute": "0.6"},
            "platform_fee_per_minute": "0.6",
        }
    )
    usage = [stt("agent", 0.1), stt("agent", 0.2)]  # 0.1 × 0.01/s = 0.001; 0.2 → 0.002
    cost = price_call(usage, prices, duration_seconds=0.3, telephony=True)
    assert cost.by_component["stt"] == D("0.003")
    assert cost.by_component["telephony"] == D("0.003")
    assert cost.by_component["platform"] == D("0.003")
    assert cost.amount == D("0.009")
    assert str(cost.amount) == "0.009"


def test_decimal_duration_is_used_as_is(prices: PriceList) -> None:
    cost = price_call([], prices, duration_seconds=D("0.6"), telephony=True)
    assert cost.by_component["telephony"] == D("0.00013")  # 0.01 min × 0.013
    assert cost.by_component["platform"] == D("0.0002")  # 0.01 min × 0.02


def test_seconds_to_minutes_that_does_not_terminate(prices: PriceList) -> None:
    cost = price_call([stt("agent", 1.0)], prices, duration_seconds=0, telephony=False)
    # 1 s × 0.0077 / 60 = 0.000128333… (77 / 600000)
    assert cost.by_component["stt"].quantize(D("1E-30")) == D("0.000128333333333333333333333333")
    assert format_usd(cost.amount, places=6) == "$0.000128"


def test_large_numbers(prices: PriceList) -> None:
    usage = [
        llm("agent", 3_000_000_000_000, 1_000_000_000_000, 1_000_000_000_000, model="gpt-4o"),
        # 2e12 × 2.50/1M = 5,000,000; 1e12 × 1.25/1M = 1,250,000; 1e12 × 10/1M = 10,000,000
        llm("agent", 0, 0, 1),  # 0.60/1M = 0.0000006
        stt("agent", 36_000_000.0),  # 600,000 min × 0.0077 = 4,620
        tts("agent", 10_000_000_000),  # 10,000,000 k × 0.15 = 1,500,000
    ]
    cost = price_call(usage, prices, duration_seconds=6_000_000, telephony=True)
    # 100,000 min: telephony 1,300; platform 2,000
    assert cost.by_component == {
        "llm": D("16250000.0000006"),
        "stt": D("4620"),
        "tts": D("1500000"),
        "telephony": D("1300"),
        "platform": D("2000"),
    }
    assert cost.amount == D("17757920.0000006")
    assert format_usd(cost.amount) == "$17,757,920.0000"


def test_more_digits_than_the_default_decimal_context_keeps() -> None:
    prices = PriceList.model_validate(
        {
            "llm": {
                "openai": {
                    "big": {
                        "input_per_1m": "12345678.1234567891",
                        "cached_input_per_1m": "0",
                        "output_per_1m": "0",
                    }
                }
            },
            "stt": {},
            "tts": {},
            "telephony": {"per_minute": "0"},
        }
    )
    usage = [llm("agent", 10**18 + 1, 0, 0, model="big")]
    cost = price_call(usage, prices, duration_seconds=0, telephony=False)
    # (1e18 + 1) × 12345678.1234567891 / 1e6
    #   = 12345678123456789100 + 12.3456781234567891  (36 significant digits; default prec is 28)
    assert cost.amount == D("12345678123456789112.3456781234567891")


def test_cost_serialises_money_as_exact_strings(prices: PriceList) -> None:
    usage = [llm("agent", 12_000, 4_000, 1_500), stt("agent", 90.0), tts("agent", 2_400)]
    cost = price_call(usage, prices, duration_seconds=150, telephony=True)
    wire = json.loads(cost.model_dump_json())
    assert wire["amount"] == "0.45645"
    assert wire["by_component"]["stt"] == "0.01155"
    assert Cost.model_validate_json(cost.model_dump_json()) == cost


@pytest.mark.parametrize(
    ("usage", "duration", "match"),
    [
        pytest.param([], -1, "duration_seconds must be >= 0", id="negative_duration"),
        pytest.param([], float("nan"), "duration_seconds must be finite", id="nan_duration"),
        pytest.param([], D("Infinity"), "duration_seconds must be finite", id="inf_duration"),
        pytest.param([llm("a", 10, 11, 0)], 0, "cached_input_tokens", id="cached_gt_input"),
        pytest.param([llm("a", -1, 0, 0)], 0, "input_tokens must be >= 0", id="negative_tokens"),
        pytest.param([stt("a", -0.5)], 0, "audio_seconds must be >= 0", id="negative_audio"),
        pytest.param([tts("a", -3)], 0, "characters must be >= 0", id="negative_characters"),
    ],
)
def test_invalid_quantities_raise(
    prices: PriceList, usage: list[UsageEntry], duration: Decimal | float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        price_call(usage, prices, duration_seconds=duration, telephony=True)


# --- display -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "places", "shown"),
    [
        (D("0.45645"), 4, "$0.4564"),  # half-even: 4 is even, stays (half-up would give 0.4565)
        (D("0.45655"), 4, "$0.4566"),  # half-even: 5 is odd, goes up
        (D("0.456451"), 4, "$0.4565"),  # above half
        (D("0"), 4, "$0.0000"),
        (D("0E-12"), 4, "$0.0000"),
        (D("-0.00001"), 4, "$0.0000"),  # rounds to zero: no sign
        (D("-0.01"), 4, "-$0.0100"),
        (D("1234.5"), 2, "$1,234.50"),
        (D("0.125"), 2, "$0.12"),
        (D("2.5"), 0, "$2"),
        (D("12345678123456789112.3456781234567891"), 4, "$12,345,678,123,456,789,112.3457"),
        (7, 4, "$7.0000"),
    ],
)
def test_format_usd(amount: Decimal, places: int, shown: str) -> None:
    assert format_usd(amount, places=places) == shown


def test_format_usd_defaults_to_four_places_and_rejects_nonsense() -> None:
    assert format_usd(D("0.00005")) == "$0.0000"
    assert format_usd(D("0.00015")) == "$0.0002"
    with pytest.raises(ValueError):
        format_usd(D("NaN"))
    with pytest.raises(ValueError):
        format_usd(D("1"), places=-1)
