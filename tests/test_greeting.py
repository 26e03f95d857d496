"""Greeting placeholders (docs/architecture.md §5): the caller hears their name, never a raw placeholder.

``{name}``, ``{contact_name}``, ``<name>`` and ``<contact_name>`` become the contact's cleaned name
in one pass (a name containing a placeholder is inserted literally), or ``there`` without one.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from typing import Any

import pytest
from pydantic import ValidationError

from convoi.callspec import resolve_call
from convoi.definitions.models import Agent, Definitions
from convoi.greeting import (
    FALLBACK_NAME,
    MAX_NAME_CHARS,
    PLACEHOLDERS,
    clean_name,
    render,
    unknown_placeholders,
)
from tests.helpers import SUPPORT

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    HAS_HYPOTHESIS = False
else:
    HAS_HYPOTHESIS = True

RECOGNISED = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in text)


# --- substitution --------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_each_placeholder_becomes_the_name(placeholder: str) -> None:
    assert render(f"Hi {placeholder}, welcome!", "Ahmed") == "Hi Ahmed, welcome!"


def test_all_placeholders_in_one_template_and_repeated() -> None:
    template = "{name} {contact_name} <name> <contact_name> {name}"
    assert render(template, "Ahmed") == "Ahmed Ahmed Ahmed Ahmed Ahmed"


def test_template_without_placeholder_is_unchanged() -> None:
    template = "Hello, this is Convoi. {} <> { } < > name contact_name"
    assert render(template, "Ahmed") == template


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces"),
        pytest.param("\t\n\r ", id="whitespace"),
        pytest.param("\x00\x1b\x07", id="only_control_characters"),
        pytest.param("\u202e\u2066", id="only_bidi_controls"),
    ],
)
def test_no_usable_name_falls_back_to_there(name: str | None) -> None:
    assert FALLBACK_NAME == "there"
    assert render("Hi {name}! <contact_name>?", name) == "Hi there! there?"


# --- one pass: names are data, never templates ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "{name}",
        "<contact_name>",
        "{contact_name} <name>",
        "{name}{name}",
        "<name",
        "{foo}",
    ],
)
def test_name_containing_placeholders_is_inserted_literally(name: str) -> None:
    assert render("Hi {name}, from <contact_name>.", name) == f"Hi {name}, from {name}."


@pytest.mark.parametrize(
    "name", ["<b>Bob</b>", "a < b > c", "<script>alert(1)</script>", "O'Brien & Sons"]
)
def test_angle_brackets_and_markup_in_names_are_kept_as_text(name: str) -> None:
    assert render("Hi {name}", name) == f"Hi {name}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Zoë 👋🏽", id="emoji_with_skin_tone"),
        pytest.param("👨\u200d👩\u200d👧 family", id="zwj_sequence"),
        pytest.param("محمد", id="arabic"),
        pytest.param("José-María Núñez", id="accents"),
        pytest.param("山田 太郎", id="cjk"),
    ],
)
def test_non_ascii_names_and_emoji_are_preserved(name: str) -> None:
    assert clean_name(name) == name
    assert render("Hi {name}", name) == f"Hi {name}"


# --- cleaning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spoken"),
    [
        pytest.param("Ah\x00med", "Ahmed", id="nul"),
        pytest.param("\x1b[31mAhmed\x1b[0m", "[31mAhmed[0m", id="ansi_escape"),
        pytest.param("\u202eAhmed", "Ahmed", id="bidi_override"),
        pytest.param("A\u2066hm\u2069ed", "Ahmed", id="bidi_isolates"),
        pytest.param("Ah\x7fmed", "Ahmed", id="del"),
        pytest.param("Ahmed\tAli", "Ahmed Ali", id="tab"),
        pytest.param("Ahmed\n\nAli", "Ahmed Ali", id="newlines"),
        pytest.param("Ahmed \t\r\n Ali", "Ahmed Ali", id="whitespace_run"),
        pytest.param("Ahmed\x85Ali", "Ahmed Ali", id="next_line_control"),
        pytest.param("  Ahmed  ", "Ahmed", id="trimmed"),
    ],
)
def test_control_characters_are_removed_and_whitespace_collapsed(name: str, spoken: str) -> None:
    assert clean_name(name) == spoken
    rendered = render("Hi {name}!", name)
    assert rendered == f"Hi {spoken}!"
    assert not has_control_character(rendered)


def test_10kb_name_is_cut_to_max_name_chars() -> None:
    name = "Bartholomew " * 900  # ~10.8 kB
    spoken = clean_name(name)
    assert 0 < len(spoken) <= MAX_NAME_CHARS
    assert spoken == spoken.strip()
    assert set(spoken.split()) == {"Bartholomew"}, "cut inside a word although spaces exist"
    assert render("Hi {name}!", name) == f"Hi {spoken}!"


def test_10kb_name_without_spaces_is_cut_hard() -> None:
    assert clean_name("x" * 10_000) == "x" * MAX_NAME_CHARS


def test_name_is_bounded_after_cleaning_not_before() -> None:
    """Control characters do not count towards the limit (they are removed first)."""
    name = "\x00" * 1_000 + "Ahmed"
    assert clean_name(name) == "Ahmed"


# --- unknown placeholders ------------------------------------------------------------------------


def test_unknown_placeholders_are_left_as_written_in_a_system_prompt() -> None:
    prompt = 'Talk to {name}. Answer as JSON {"ok": true}; fill {slot} and <tool_call>.'
    assert render(prompt, "Ahmed") == (
        'Talk to Ahmed. Answer as JSON {"ok": true}; fill {slot} and <tool_call>.'
    )
    assert unknown_placeholders(prompt) == ["{slot}", "<tool_call>"]


def _agent(**changes: Any) -> Agent:
    fields: dict[str, Any] = {
        "id": "agt_greetingtest01",
        "name": "Greeter",
        "system_prompt": "You greet {name}. Keep {foo} as written.",
        "tts": {"voice_id": "rachel"},
    }
    return Agent.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    "first_message", ["Hi {foo}!", "Hi <first_name>", "Hi {Name}", "Hi { name }", "Hi <b>there</b>"]
)
def test_unknown_placeholder_makes_a_first_message_invalid(first_message: str) -> None:
    with pytest.raises(ValidationError) as info:
        _agent(first_message=first_message)
    (error,) = info.value.errors()
    assert error["loc"] == ("first_message",)
    assert "unknown placeholder" in error["msg"]


@pytest.mark.parametrize(
    "first_message", ["Hi {name}!", "Hi <contact_name>.", "Hello there.", "5 < 6 > 4 {}"]
)
def test_known_placeholders_and_plain_text_make_a_valid_first_message(first_message: str) -> None:
    assert _agent(first_message=first_message).first_message == first_message


# --- property: one pass, no control characters ---------------------------------------------------

TEMPLATE = "Hi {name}, <contact_name>!"

SOUP: list[str] = [
    *"abcAZ019 _-.'",
    *"{}<>",
    "name",
    "contact_",
    "{name}",
    "{contact_name}",
    "<name>",
    "<contact_name>",
    "{name",
    "name}",
    "<contact_",
    *"\t\n\r\x00\x07\x1b\x7f\x85",
    *"\u202a\u202e\u2066\u2069\u200b\u200d",
    "😀",
    "👋🏽",
    "é",
    "ß",
    "山",
    "م",
]


def check_single_pass(name: str) -> None:
    spoken = clean_name(name)
    rendered = render(TEMPLATE, name)
    assert rendered == f"Hi {spoken}, {spoken}!"
    assert len(RECOGNISED.findall(rendered)) == 2 * len(RECOGNISED.findall(spoken)), (
        "a placeholder appeared that the cleaned name did not contain"
    )
    assert not has_control_character(rendered)
    assert len(spoken) <= MAX_NAME_CHARS


def random_name(rng: random.Random) -> str:
    size = rng.choice([0, 1, 3, 8, 20, 60])
    return "".join(rng.choice(SOUP) for _ in range(size))


def test_random_names_never_expand_or_leak_control_characters() -> None:
    rng = random.Random(20240605)
    names = [random_name(rng) for _ in range(500)]
    assert sum(bool(RECOGNISED.search(n)) for n in names) > 50, "soup too thin to test anything"
    for name in names:
        check_single_pass(name)


if HAS_HYPOTHESIS:

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(SOUP) | st.characters(), max_size=60).map("".join))
    def test_hypothesis_names_never_expand_or_leak_control_characters(name: str) -> None:
        check_single_pass(name)


# --- the name a call greets with -----------------------------------------------------------------


def _greeting(defs: Definitions, **body: Any) -> str | None:
    spec = {"call_id": "call_greetingtest01", "agent_id": SUPPORT, **body}
    return resolve_call(json.dumps(spec), defs).start_agent.greeting


def _phone(name: str | None, **extra: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {"number": "+971501234567"}
    if name is not None:
        customer["name"] = name
    return {
        "type": "outbound_phone",
        "customer": customer,
        "phone_number_id": "phn_c38155f043624745a66d2e28c185xxxx",
        **extra,
    }


SUPPORT_GREETING = "Hi {}, thanks for calling Convoi support. How can I help you today?"


def test_web_call_greets_the_participant_name(defs: Definitions) -> None:
    greeting = _greeting(defs, type="web", participant_name="Sara")
    assert greeting == SUPPORT_GREETING.format("Sara")


def test_phone_call_greets_the_customer_name(defs: Definitions) -> None:
    assert _greeting(defs, **_phone("Ahmed")) == SUPPORT_GREETING.format("Ahmed")


def test_phone_call_uses_the_customer_name_not_participant_name(defs: Definitions) -> None:
    assert _greeting(defs, **_phone("Ahmed", participant_name="Ops")) == SUPPORT_GREETING.format(
        "Ahmed"
    )
    assert _greeting(defs, **_phone(None, participant_name="Ops")) == SUPPORT_GREETING.format(
        "there"
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"type": "web"}, id="web_without_participant_name"),
        pytest.param({"type": "web", "participant_name": " \u202e "}, id="web_blank_name"),
        pytest.param(_phone(None), id="phone_without_customer_name"),
        pytest.param(_phone(""), id="phone_empty_customer_name"),
    ],
)
def test_call_without_a_name_greets_there(defs: Definitions, body: dict[str, Any]) -> None:
    assert _greeting(defs, **body) == SUPPORT_GREETING.format("there")


def test_call_renders_the_system_prompt_too_and_keeps_its_unknown_placeholders(
    defs: Definitions,
) -> None:
    spec = {
        "call_id": "call_greetingtest02",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "{contact_name}",
        "agent_overrides": {"system_prompt": "Speak with <name>; reply as {format}."},
    }
    member = resolve_call(json.dumps(spec), defs).start_agent
    assert member.instructions == "Speak with {contact_name}; reply as {format}."
    assert member.greeting == SUPPORT_GREETING.format("{contact_name}")


def test_invisible_format_characters_are_removed_but_emoji_joiners_kept() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert clean_name("A\u200bh\u200emed\ufeff \u061c" + family) == "Ahmed " + family
