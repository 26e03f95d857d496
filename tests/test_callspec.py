"""CallSpec validation and resolution: the seed's examples run, and every bad request names its field.

A CallSpec is the dispatch metadata the control plane hands the worker (docs/architecture.md §2). A bad one must
end the call with ``invalid_request`` and a reason a human can act on, so each invalid case below
checks the exact dotted field reported (``CallSpecError.field``) and a fragment of the problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from convoi.callspec import CallSpec, CallSpecError, ResolvedCall, parse_callspec, resolve_call
from convoi.definitions.models import Definitions
from tests.fixtures.seed_examples import (
    OUTBOUND_FULL,
    SEED_EXAMPLES,
    SUBSTITUTIONS,
    VERBATIM_EXAMPLES,
    WEB_OVERRIDES,
    WORKFORCE_IN_AGENT_ID,
    WORKFORCE_IN_SQUAD_ID,
    SeedExample,
)
from tests.helpers import HELP_KB, REPO, SQUAD, SUPPORT, UAE_LINE, US_LINE

SEED_FILE = REPO / "docs" / "seed" / "calls-api.txt"
"""The product's public contract, kept in the repo (a copy of the steering repo's shared/seed)."""

# --- helpers -------------------------------------------------------------------------------------

_DROP = object()
"""Marks a key to remove from the base spec."""


def _with(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def web(**changes: Any) -> dict[str, Any]:
    """A valid web call to the support agent, with ``changes`` applied (``_DROP`` removes a key)."""
    return _with({"call_id": "call_testweb0001", "type": "web", "agent_id": SUPPORT}, changes)


def phone(**changes: Any) -> dict[str, Any]:
    """A valid outbound call from the US line, with ``changes`` applied."""
    base = {
        "call_id": "call_testphone0001",
        "type": "outbound_phone",
        "agent_id": SUPPORT,
        "customer": {"number": "+971501234567", "name": "Ahmed"},
        "phone_number_id": US_LINE,
    }
    return _with(base, changes)


def web_overrides(**overrides: Any) -> dict[str, Any]:
    """A valid web call whose ``agent_overrides`` are ``overrides``."""
    return web(agent_overrides=overrides)


def customer_number(number: Any) -> dict[str, Any]:
    """A valid outbound call to ``number``."""
    return phone(customer={"number": number, "name": "Ahmed"})


def reject(metadata: str | dict[str, Any], defs: Definitions) -> CallSpecError:
    """Resolve ``metadata`` and return the CallSpecError it must raise."""
    with pytest.raises(CallSpecError) as info:
        resolve_call(metadata if isinstance(metadata, str) else json.dumps(metadata), defs)
    return info.value


# --- the seed's examples -------------------------------------------------------------------------


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("example", VERBATIM_EXAMPLES, ids=lambda e: e.name)
def test_seed_example_is_copied_verbatim(example: SeedExample) -> None:
    assert _squash(example.seed_json) in _squash(SEED_FILE.read_text(encoding="utf-8"))


def test_every_substitution_is_used_and_only_replaces_what_the_seed_redacts() -> None:
    seeds = "".join(e.seed_json for e in SEED_EXAMPLES)
    for seed_value, used in SUBSTITUTIONS.items():
        assert seed_value in seeds, f"{seed_value} does not occur in any seed example"
        assert used not in seeds
    for example in SEED_EXAMPLES:
        assert "…" not in example.text() and "..." not in example.text()
        assert "XXXX" not in example.text()


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=lambda e: e.name)
def test_seed_example_parses_as_a_callspec(example: SeedExample) -> None:
    spec = parse_callspec(json.dumps(example.body()))
    body = example.body()
    assert spec.call_id == example.call_id
    assert spec.type == body["type"]
    assert spec.metadata == body.get("metadata")
    if "customer" in body:
        assert spec.customer is not None
        assert spec.customer.number == body["customer"]["number"]
        assert spec.customer.name == body["customer"].get("name")


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=lambda e: e.name)
def test_seed_example_resolves_against_shipped_definitions(
    example: SeedExample, defs: Definitions
) -> None:
    call = resolve_call(json.dumps(example.body()), defs)
    assert call.start_agent.greeting == example.expected_greeting
    if call.spec.type == "outbound_phone":
        assert call.phone_number is not None
        assert call.phone_number.id == example.body()["phone_number_id"]
    else:
        assert call.phone_number is None


@pytest.mark.parametrize(
    "example", [WORKFORCE_IN_AGENT_ID, WORKFORCE_IN_SQUAD_ID], ids=lambda e: e.name
)
def test_workforce_examples_resolve_to_the_squad(example: SeedExample, defs: Definitions) -> None:
    call = resolve_call(json.dumps(example.body()), defs)
    assert call.spec.squad_id == SQUAD
    assert call.spec.agent_id is None
    assert call.squad is not None and call.squad.id == SQUAD
    assert call.start == "triage"
    assert set(call.members) == {"triage", "billing", "support"}
    assert call.start_agent.greeting is not None
    assert call.start_agent.greeting.startswith("Hi Ahmed, ")


def test_web_overrides_example_applies_every_override(defs: Definitions) -> None:
    call: ResolvedCall = resolve_call(json.dumps(WEB_OVERRIDES.body()), defs)
    agent = call.start_agent.agent
    assert call.start_agent.instructions == "You are a concise support agent."
    assert (agent.llm.model, agent.llm.temperature) == ("gpt-4o-mini", 0.7)
    assert (agent.tts.voice_id, agent.tts.speed) == ("rachel", 1.0)
    assert (agent.stt.language, agent.stt.model) == ("en", "nova-2")
    assert agent.knowledge_base_ids == (HELP_KB,)


def test_seed_placeholder_number_is_rejected_as_written(defs: Definitions) -> None:
    """The full outbound example's "+0000000" is not E.164 (a country code never starts with 0)."""
    unsubstituted = OUTBOUND_FULL.body(substitute=False)
    assert unsubstituted["customer"]["number"] == "+0000000"
    error = reject(unsubstituted, defs)
    assert error.field == "customer.number"
    assert "E.164" in error.problem
    assert error.reason == "invalid_request"


def test_parse_accepts_a_decoded_mapping_and_bytes() -> None:
    body = WORKFORCE_IN_AGENT_ID.body()
    from_mapping = parse_callspec(body)
    from_bytes = parse_callspec(json.dumps(body).encode())
    assert from_mapping == from_bytes
    assert isinstance(from_mapping, CallSpec)
    assert from_mapping.squad_id == SQUAD


def test_same_workforce_id_in_agent_id_and_squad_id_is_accepted(defs: Definitions) -> None:
    call = resolve_call(json.dumps(phone(agent_id=SQUAD, squad_id=SQUAD)), defs)
    assert (call.spec.agent_id, call.spec.squad_id) == (None, SQUAD)


# --- invalid CallSpecs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """An invalid CallSpec (a decoded body, or the raw metadata text) and what must be reported."""

    metadata: dict[str, Any] | str
    field: str
    problem: str
    """A fragment of CallSpecError.problem."""


def _case(case_id: str, metadata: dict[str, Any] | str, field: str, problem: str, **kw: Any) -> Any:
    return pytest.param(Bad(metadata, field, problem), id=case_id, **kw)


INVALID = [
    # loose values that must not be coerced
    _case(
        "temperature_as_string",
        web_overrides(llm={"temperature": "0.7"}),
        "agent_overrides.llm.temperature",
        "valid number",
    ),
    _case(
        "temperature_as_bool",
        web_overrides(llm={"temperature": True}),
        "agent_overrides.llm.temperature",
        "valid number",
    ),
    _case(
        "metadata_nan",
        '{"call_id": "call_testweb0001", "type": "web", "agent_id": "'
        + SUPPORT
        + '", "metadata": {"x": NaN}}',
        "job.metadata",
        "NaN is not a JSON number",
    ),
    _case(
        "duplicate_agent_id_key",
        '{"call_id": "call_testweb0001", "type": "web", "agent_id": "'
        + SUPPORT
        + '", "agent_id": "agt_00000000"}',
        "job.metadata",
        "'agent_id' appears more than once",
    ),
    # agent / squad
    _case("agent_and_squad_both", phone(squad_id=SQUAD), "squad_id", "not both"),
    _case("neither_agent_nor_squad", phone(agent_id=_DROP), "agent_id", "required"),
    _case("null_agent_id", web(agent_id=None), "agent_id", "required"),
    _case("sqd_in_agent_id_on_web", web(agent_id=SQUAD), "agent_id", "web calls are single-agent"),
    _case(
        "squad_id_on_web", web(agent_id=_DROP, squad_id=SQUAD), "squad_id", "outbound_phone only"
    ),
    _case(
        "agent_id_and_different_squad_id",
        phone(agent_id=SQUAD, squad_id="sqd_00001111"),
        "squad_id",
        "differs",
    ),
    _case("agent_id_wrong_prefix", web(agent_id="usr_12345678"), "agent_id", "'agt_' or 'sqd_'"),
    _case("agent_id_uppercase", web(agent_id="agt_ABCDEF12"), "agent_id", "lowercase"),
    _case(
        "squad_id_with_agent_prefix",
        phone(agent_id=_DROP, squad_id=SUPPORT),
        "squad_id",
        "'sqd_'",
    ),
    # E.164
    _case("e164_no_plus", customer_number("971501234567"), "customer.number", "E.164"),
    _case("e164_letters", customer_number("+97150ABC4567"), "customer.number", "E.164"),
    _case("e164_too_long", customer_number("+1234567890123456"), "customer.number", "E.164"),
    _case("e164_too_short", customer_number("+123456"), "customer.number", "E.164"),
    _case("e164_spaces", customer_number("+971 50 123 4567"), "customer.number", "E.164"),
    _case("e164_dashes", customer_number("+1-555-000-0001"), "customer.number", "E.164"),
    _case("e164_leading_zero", customer_number("+0971501234567"), "customer.number", "E.164"),
    _case("e164_as_integer", customer_number(971501234567), "customer.number", "valid string"),
    # the shape of an outbound call
    _case("outbound_without_customer", phone(customer=_DROP), "customer.number", "required"),
    _case("outbound_customer_null", phone(customer=None), "customer.number", "required"),
    _case(
        "outbound_customer_without_number",
        phone(customer={"name": "Ahmed"}),
        "customer.number",
        "required",
    ),
    _case(
        "outbound_without_phone_number_id",
        phone(phone_number_id=_DROP),
        "phone_number_id",
        "required",
    ),
    _case(
        "phone_number_id_on_web",
        web(phone_number_id=US_LINE),
        "phone_number_id",
        "only for outbound_phone",
    ),
    _case(
        "customer_on_web",
        web(customer={"number": "+971501234567"}),
        "customer",
        "only for outbound_phone",
    ),
    _case(
        "phone_number_id_bad_prefix",
        phone(phone_number_id="pn_12345678"),
        "phone_number_id",
        "'phn_'",
    ),
    # unknown keys
    _case("unknown_top_level_key", web(agentId=SUPPORT), "agentId", "unknown key"),
    _case(
        "unknown_customer_key",
        phone(customer={"number": "+971501234567", "email": "a@b.c"}),
        "customer.email",
        "unknown key",
    ),
    _case(
        "unknown_override_key",
        web_overrides(voice="rachel"),
        "agent_overrides.voice",
        "unknown key",
    ),
    _case(
        "unknown_llm_override_key",
        web_overrides(llm={"temprature": 0.5}),
        "agent_overrides.llm.temprature",
        "unknown key",
    ),
    _case(
        "unknown_tts_override_key",
        web_overrides(tts={"pitch": 2}),
        "agent_overrides.tts.pitch",
        "unknown key",
    ),
    _case(
        "unknown_stt_override_key",
        web_overrides(stt={"diarize": True}),
        "agent_overrides.stt.diarize",
        "unknown key",
    ),
    # override values
    _case(
        "temperature_above_2",
        web_overrides(llm={"temperature": 2.5}),
        "agent_overrides.llm.temperature",
        "less than or equal to 2",
    ),
    _case(
        "temperature_negative",
        web_overrides(llm={"temperature": -0.1}),
        "agent_overrides.llm.temperature",
        "greater than or equal to 0",
    ),
    _case(
        "temperature_not_a_number",
        web_overrides(llm={"temperature": "hot"}),
        "agent_overrides.llm.temperature",
        "valid number",
    ),
    _case(
        "tts_speed_out_of_range",
        web_overrides(tts={"speed": 3}),
        "agent_overrides.tts.speed",
        "less than or equal to 1.2",
    ),
    _case(
        "stt_language_malformed",
        web_overrides(stt={"language": "english!"}),
        "agent_overrides.stt.language",
        "pattern",
    ),
    _case(
        "llm_override_not_an_object",
        web_overrides(llm="gpt-4o"),
        "agent_overrides.llm",
        "valid dictionary",
    ),
    _case(
        "overrides_not_an_object",
        web(agent_overrides=["first_message"]),
        "agent_overrides",
        "valid dictionary",
    ),
    _case(
        "unknown_llm_provider",
        web_overrides(llm={"provider": "anthropic", "model": "claude"}),
        "agent_overrides.llm.provider",
        "unknown llm provider 'anthropic'",
    ),
    _case(
        "unknown_tts_provider",
        web_overrides(tts={"provider": "cartesia", "voice_id": "x"}),
        "agent_overrides.tts.provider",
        "unknown tts provider 'cartesia'",
    ),
    _case(
        "empty_system_prompt",
        web_overrides(system_prompt=""),
        "agent_overrides.system_prompt",
        "at least 1 character",
    ),
    _case(
        "first_message_unknown_brace_placeholder",
        web_overrides(first_message="Hi {foo}, welcome"),
        "agent_overrides.first_message",
        "unknown placeholder {foo}",
    ),
    _case(
        "first_message_unknown_angle_placeholder",
        web_overrides(first_message="Hi <first_name>"),
        "agent_overrides.first_message",
        "unknown placeholder <first_name>",
    ),
    # wrong types
    _case("type_is_a_number", web(type=5), "type", "'web' or 'outbound_phone'"),
    _case("type_unknown_value", web(type="inbound_phone"), "type", "'web' or 'outbound_phone'"),
    _case("agent_id_is_a_number", web(agent_id=123), "agent_id", "valid string"),
    _case("metadata_is_a_string", web(metadata="x"), "metadata", "valid dictionary"),
    _case("metadata_is_a_list", web(metadata=[1]), "metadata", "valid dictionary"),
    _case(
        "participant_name_is_an_object",
        web(participant_name={"first": "A"}),
        "participant_name",
        "valid string",
    ),
    _case(
        "customer_name_is_a_list",
        phone(customer={"number": "+971501234567", "name": ["A"]}),
        "customer.name",
        "valid string",
    ),
    _case("customer_is_a_string", phone(customer="+971501234567"), "customer", "valid dictionary"),
    # sizes
    _case(
        "participant_name_10k",
        web(participant_name="A" * 10_000),
        "participant_name",
        "too long (at most 256 characters)",
    ),
    _case(
        "customer_name_10k",
        phone(customer={"number": "+971501234567", "name": "A" * 10_000}),
        "customer.name",
        "too long",
    ),
    _case(
        "first_message_override_100k",
        web_overrides(first_message="x" * 100_000),
        "agent_overrides.first_message",
        "too long (at most 2000 characters)",
    ),
    _case(
        "system_prompt_override_100k",
        web_overrides(system_prompt="x" * 100_000),
        "agent_overrides.system_prompt",
        "too long",
    ),
    _case(
        "metadata_over_16kb",
        web(metadata={"blob": "x" * 16_400}),
        "metadata",
        "too large (at most 16384 bytes",
    ),
    _case(
        "customer_metadata_over_16kb",
        phone(customer={"number": "+971501234567", "metadata": {"blob": "x" * 16_400}}),
        "customer.metadata",
        "too large",
    ),
    _case(
        "metadata_over_16kb_in_utf8_bytes",
        web(metadata={"blob": "€" * 6_000}),  # 6,000 characters, 18,000 bytes in UTF-8
        "metadata",
        "too large",
    ),
    _case(
        "too_many_knowledge_bases",
        web_overrides(knowledge_base_ids=[HELP_KB] * 51),
        "agent_overrides.knowledge_base_ids",
        "at most 50",
    ),
    # the metadata as a whole
    _case("metadata_not_json", "{type: web}", "job.metadata", "not valid JSON"),
    _case("metadata_truncated_json", '{"type": "web", ', "job.metadata", "not valid JSON"),
    _case("metadata_empty_string", "", "job.metadata", "empty"),
    _case("metadata_whitespace_only", " \n ", "job.metadata", "empty"),
    _case("metadata_json_array", "[1, 2]", "job.metadata", "must be a JSON object, got list"),
    _case("metadata_json_null", "null", "job.metadata", "must be a JSON object"),
    _case("metadata_json_string", '"web"', "job.metadata", "must be a JSON object, got str"),
    _case(
        "metadata_nested_200k_deep",
        '{"type": "web", "metadata": {"a": ' + "[" * 200_000 + "]" * 200_000 + "}}",
        "job.metadata",
        "",
    ),
    _case(
        "metadata_integer_5000_digits",
        '{"type": "web", "metadata": {"n": ' + "9" * 5_000 + "}}",
        "job.metadata",
        "",
    ),
    # ids that do not exist in the definitions
    _case("unknown_agent", web(agent_id="agt_00000000"), "agent_id", "unknown agent agt_00000000"),
    _case(
        "unknown_squad",
        phone(agent_id=_DROP, squad_id="sqd_00000000"),
        "squad_id",
        "unknown workforce sqd_00000000",
    ),
    _case(
        "unknown_squad_in_agent_id",
        phone(agent_id="sqd_00000000"),
        "squad_id",
        "unknown workforce sqd_00000000",
    ),
    _case(
        "unknown_phone_number",
        phone(phone_number_id="phn_00000000"),
        "phone_number_id",
        "unknown phone number phn_00000000",
    ),
    _case(
        "unknown_knowledge_base",
        web_overrides(knowledge_base_ids=["kb_00000000"]),
        "agent_overrides.knowledge_base_ids[0]",
        "unknown knowledge base kb_00000000",
    ),
    _case(
        "unknown_knowledge_base_second",
        web_overrides(knowledge_base_ids=[HELP_KB, "kb_00000000"]),
        "agent_overrides.knowledge_base_ids[1]",
        "unknown knowledge base",
    ),
    _case(
        "malformed_knowledge_base_id",
        web_overrides(knowledge_base_ids=["kb_3A1C"]),
        "agent_overrides.knowledge_base_ids[0]",
        "'kb_' followed by 4-64 lowercase",
    ),
    _case(
        "knowledge_base_ids_not_a_list",
        web_overrides(knowledge_base_ids=HELP_KB),
        "agent_overrides.knowledge_base_ids",
        "valid list",
    ),
    # call id
    _case("call_id_missing", web(call_id=_DROP), "call_id", "required"),
    _case("call_id_no_prefix", web(call_id="01HXABCDEF"), "call_id", "'call_'"),
    _case("call_id_with_dash", web(call_id="call_01HX-ABCD"), "call_id", "letters or digits"),
    _case("call_id_too_short", web(call_id="call_ab"), "call_id", "4-64"),
    _case("call_id_is_a_number", web(call_id=42), "call_id", "valid string"),
    # squad calls report call-override problems under the call's own field path
    _case(
        "squad_call_with_bad_override",
        phone(agent_id=SQUAD, phone_number_id=UAE_LINE, agent_overrides={"llm": {"top_p": 0}}),
        "agent_overrides.llm.top_p",
        "greater than 0",
    ),
]


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_callspec_names_the_field(bad: Bad, defs: Definitions) -> None:
    error = reject(bad.metadata, defs)
    assert error.field == bad.field, str(error)
    assert bad.problem in error.problem
    assert error.reason == "invalid_request"
    assert str(error).startswith(f"{bad.field}: ")


def test_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 30


def test_huge_participant_name_is_not_echoed_back(defs: Definitions) -> None:
    """A 10k name is refused with a short reason, not a 10k one (it ends up in a call report)."""
    error = reject(web(participant_name="A" * 10_000), defs)
    assert len(str(error)) < 300


def test_every_problem_is_listed_not_just_the_first(defs: Definitions) -> None:
    error = reject(web(call_id="nope", type="inbound", participant_name=7), defs)
    assert {issue.field for issue in error.issues} == {"call_id", "type", "participant_name"}
