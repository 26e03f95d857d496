"""Override merge: one test per rule in the docstring of ``convoi/definitions/overrides.py`` (docs/architecture.md §4).

Plus: merging never mutates the definition, and in a squad the precedence is
definition < member overrides < call overrides, for every member.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from convoi.callspec import resolve_call
from convoi.definitions import overrides as merge_module  # rule 3 swaps its ``Agent``
from convoi.definitions.models import Agent, Definitions
from convoi.definitions.overrides import AgentOverrides, OverrideError, merge
from convoi.definitions.providers import OpenAILLM
from tests.helpers import BILLING, BILLING_KB, HELP_KB, SQUAD, SUPPORT


@pytest.fixture
def support(defs: Definitions) -> Agent:
    """The shipped support agent: gpt-4o-mini at 0.3, voice rachel, nova-3 en-US, one KB."""
    agent = defs.agents[SUPPORT]
    assert (agent.llm.model, agent.llm.temperature) == ("gpt-4o-mini", 0.3)
    assert (agent.tts.voice_id, agent.stt.language) == ("rachel", "en-US")
    assert agent.knowledge_base_ids == (HELP_KB,)
    return agent


def merged(agent: Agent, overrides: dict[str, Any] | AgentOverrides | None) -> Agent:
    return merge(agent, overrides).agent


def override_error(agent: Agent, overrides: dict[str, Any], **kw: Any) -> OverrideError:
    with pytest.raises(OverrideError) as info:
        merge(agent, overrides, **kw)
    return info.value


# --- rule 1: scalars replace ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["first_message", "system_prompt"])
def test_rule1_scalar_override_replaces_the_definition(support: Agent, key: str) -> None:
    agent = merged(support, {key: "Hello {name}, short and sweet."})
    assert getattr(agent, key) == "Hello {name}, short and sweet."
    # nothing else moved
    assert agent.model_dump(exclude={key}) == support.model_dump(exclude={key})


# --- rule 2: provider blocks merge key by key ----------------------------------------------------


@pytest.mark.parametrize(
    ("block", "override", "changed", "kept"),
    [
        pytest.param(
            "llm", {"temperature": 0.9}, {"temperature": 0.9}, {"model": "gpt-4o-mini"}, id="llm"
        ),
        pytest.param(
            "llm",
            {"provider": "openai", "model": "gpt-4o"},
            {"model": "gpt-4o"},
            {"temperature": 0.3},
            id="llm_same_provider_named",
        ),
        pytest.param(
            "tts",
            {"speed": 1.1},
            {"speed": 1.1},
            {"voice_id": "rachel", "model": "eleven_turbo_v2_5"},
            id="tts",
        ),
        pytest.param("stt", {"language": "ar"}, {"language": "ar"}, {"model": "nova-3"}, id="stt"),
    ],
)
def test_rule2_same_provider_block_merges_key_by_key(
    support: Agent,
    block: str,
    override: dict[str, Any],
    changed: dict[str, Any],
    kept: dict[str, Any],
) -> None:
    result = merge(support, {block: override})
    after = getattr(result.agent, block)
    for key, value in {**changed, **kept}.items():
        assert getattr(after, key) == value, key
    assert result.notes == []


# --- rule 3: a different provider replaces the whole block ---------------------------------------


class _FakeLLM(BaseModel):
    """A second LLM provider, for this test only (the product ships one per kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: Literal["fakellm"] = "fakellm"
    model: str
    temperature: float | None = None


class _AgentWithTwoLLMs(Agent):
    llm: OpenAILLM | _FakeLLM = Field(default_factory=OpenAILLM)  # type: ignore[assignment]


def test_rule3_other_provider_replaces_the_whole_block_and_notes_it(
    support: Agent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(merge_module, "Agent", _AgentWithTwoLLMs)
    with caplog.at_level(logging.INFO, logger="convoi.overrides"):
        result = merge(support, {"llm": {"provider": "fakellm", "model": "fake-1"}})
    assert isinstance(result.agent.llm, _FakeLLM)
    # temperature 0.3 from the openai block was not carried over into the new provider's block
    assert result.agent.llm == _FakeLLM(model="fake-1", temperature=None)
    assert len(result.notes) == 1
    assert "llm" in result.notes[0] and "openai" in result.notes[0]
    assert "fakellm" in result.notes[0] and "replaced" in result.notes[0]
    assert any(r.name == "convoi.overrides" for r in caplog.records), "replacement not logged"
    # the other blocks are untouched
    assert (result.agent.tts, result.agent.stt) == (support.tts, support.stt)


def test_rule3_with_shipped_providers_the_replaced_block_keeps_nothing(support: Agent) -> None:
    """Unknown provider: the block is replaced (so voice_id is gone too) and both are reported."""
    error = override_error(support, {"tts": {"provider": "cartesia"}})
    fields = {issue.field for issue in error.issues}
    assert "agent_overrides.tts.provider" in fields
    assert "agent_overrides.tts.voice_id" in fields


# --- rule 4: knowledge_base_ids replaces ---------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param([BILLING_KB], (BILLING_KB,), id="other_kb_replaces"),
        pytest.param([BILLING_KB, HELP_KB], (BILLING_KB, HELP_KB), id="order_kept"),
        pytest.param([], (), id="empty_list_clears"),
    ],
)
def test_rule4_knowledge_base_ids_replace_the_list(
    support: Agent, override: list[str], expected: tuple[str, ...]
) -> None:
    assert merged(support, {"knowledge_base_ids": override}).knowledge_base_ids == expected


# --- rule 5: absent or null keys leave the definition untouched ----------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(None, id="no_overrides"),
        pytest.param({}, id="empty"),
        pytest.param(
            {
                "first_message": None,
                "system_prompt": None,
                "llm": None,
                "tts": None,
                "stt": None,
                "knowledge_base_ids": None,
            },
            id="all_null",
        ),
        pytest.param({"llm": {}}, id="empty_block"),
    ],
)
def test_rule5_absent_or_null_keys_leave_the_definition_untouched(
    support: Agent, overrides: dict[str, Any] | None
) -> None:
    result = merge(support, overrides)
    assert result.agent == support
    assert result.notes == []


def test_rule5_only_the_given_keys_change(support: Agent) -> None:
    agent = merged(support, {"first_message": "Hi!", "llm": None})
    assert agent.first_message == "Hi!"
    assert agent.model_dump(exclude={"first_message"}) == support.model_dump(
        exclude={"first_message"}
    )


# --- rule 6: the result is validated again, errors under the override's path ---------------------


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        pytest.param(
            {"llm": {"temperature": 7}},
            "agent_overrides.llm.temperature",
            "less than or equal to 2",
            id="llm_value",
        ),
        pytest.param(
            {"llm": {"temprature": 0.5}},
            "agent_overrides.llm.temprature",
            "unknown key; allowed here: model, temperature",
            id="llm_unknown_key",
        ),
        pytest.param(
            {"tts": {"voice_id": "not a voice"}},
            "agent_overrides.tts.voice_id",
            "pattern",
            id="tts_value",
        ),
        pytest.param(
            {"stt": {"endpointing_ms": -1}},
            "agent_overrides.stt.endpointing_ms",
            "greater than or equal to 0",
            id="stt_value",
        ),
        pytest.param(
            {"first_message": "Hi {first_name}"},
            "agent_overrides.first_message",
            "unknown placeholder {first_name}",
            id="first_message_placeholder",
        ),
        pytest.param(
            {"knowledge_base_ids": ["kb_NOPE"]},
            "agent_overrides.knowledge_base_ids[0]",
            "'kb_'",
            id="kb_id_format",
        ),
        pytest.param({"voice": "x"}, "agent_overrides.voice", "unknown key", id="unknown_key"),
    ],
)
def test_rule6_merged_agent_is_validated_and_errors_name_the_override_field(
    support: Agent, overrides: dict[str, Any], field: str, problem: str
) -> None:
    error = override_error(support, overrides)
    assert [issue.field for issue in error.issues] == [field]
    assert problem in error.issues[0].problem


def test_rule6_errors_use_the_given_field_prefix(support: Agent) -> None:
    error = override_error(support, {"tts": {"speed": 9}}, field_prefix="members.support.overrides")
    assert [issue.field for issue in error.issues] == ["members.support.overrides.tts.speed"]


# --- the definition is never mutated -------------------------------------------------------------


def test_merge_does_not_mutate_the_definition(support: Agent) -> None:
    before = support.model_dump()
    overrides = {
        "first_message": "Yo {name}",
        "system_prompt": "Be brief.",
        "llm": {"model": "gpt-4o", "temperature": 1.5},
        "tts": {"voice_id": "adam", "speed": 0.8},
        "stt": {"language": "fr", "keyterms": ["Convoi"]},
        "knowledge_base_ids": [BILLING_KB],
    }
    sent = json.loads(json.dumps(overrides))
    result = merge(support, overrides)
    assert result.agent is not support
    assert result.agent.tts.voice_id == "adam"
    assert support.model_dump() == before
    assert overrides == sent, "the overrides themselves were modified"


def test_a_call_with_overrides_leaves_the_loaded_definitions_as_they_were(
    defs: Definitions,
) -> None:
    before = defs.model_dump()
    call = {
        "call_id": "call_nomutation01",
        "type": "outbound_phone",
        "agent_id": SQUAD,
        "customer": {"number": "+971501234567", "name": "Ahmed"},
        "phone_number_id": "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7",
        "agent_overrides": {"first_message": "Hey {name}", "tts": {"voice_id": "adam"}},
    }
    resolve_call(json.dumps(call), defs)
    assert defs.model_dump() == before


# --- squads: definition < member overrides < call overrides --------------------------------------


def _squad_call(**agent_overrides: Any) -> str:
    body: dict[str, Any] = {
        "call_id": "call_squadprecedence1",
        "type": "outbound_phone",
        "agent_id": SQUAD,
        "customer": {"number": "+971501234567", "name": "Ahmed"},
        "phone_number_id": "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7",
    }
    if agent_overrides:
        body["agent_overrides"] = agent_overrides
    return json.dumps(body)


def test_member_override_beats_the_agent_definition(defs: Definitions) -> None:
    members = resolve_call(_squad_call(), defs).members
    assert defs.agents[BILLING].first_message == (
        "Hi {name}, you're through to billing. What can I do for you?"
    )
    assert members["billing"].greeting == (
        "Thanks Ahmed, I'm the billing specialist. What's the question about your bill?"
    )
    assert members["support"].greeting == "Hi Ahmed, support here. What seems to be the problem?"
    # triage has no member overrides: the agent's own first_message
    assert members["triage"].greeting == (
        "Hi Ahmed, this is Convoi. Are you calling about billing, or do you need support?"
    )


def test_call_override_beats_member_overrides_for_every_member(defs: Definitions) -> None:
    members = resolve_call(_squad_call(first_message="Hello {name}, Convoi here."), defs).members
    assert {key: m.greeting for key, m in members.items()} == {
        "triage": "Hello Ahmed, Convoi here.",
        "billing": "Hello Ahmed, Convoi here.",
        "support": "Hello Ahmed, Convoi here.",
    }


def test_call_block_override_reaches_every_member_and_keeps_their_own_settings(
    defs: Definitions,
) -> None:
    members = resolve_call(_squad_call(llm={"temperature": 1.1}), defs).members
    for key, member in members.items():
        assert member.agent.llm.temperature == 1.1, key
        assert member.agent.tts.voice_id == defs.agents[member.agent.id].tts.voice_id, key


def test_member_overrides_do_not_apply_outside_the_squad(defs: Definitions) -> None:
    call = {"call_id": "call_billingalone01", "type": "web", "agent_id": BILLING}
    greeting = resolve_call(json.dumps(call), defs).start_agent.greeting
    assert greeting == "Hi there, you're through to billing. What can I do for you?"


def test_rule5_null_inside_a_block_leaves_that_key_as_defined(support: Agent) -> None:
    agent = merged(
        support, {"llm": {"temperature": None, "model": "gpt-4o"}, "tts": {"voice_id": None}}
    )
    assert agent.llm.temperature == support.llm.temperature
    assert agent.llm.model == "gpt-4o"
    assert agent.tts.voice_id == support.tts.voice_id


def test_limits_merge_key_by_key_and_errors_name_the_limit(support: Agent) -> None:
    merged = merge(support, {"limits": {"silence_timeout_seconds": 8, "wrap_up_seconds": None}})
    assert merged.agent.limits.silence_timeout_seconds == 8
    assert merged.agent.limits.max_duration_seconds == support.limits.max_duration_seconds
    assert merged.agent.limits.wrap_up_seconds == support.limits.wrap_up_seconds  # null: kept
    with pytest.raises(OverrideError) as err:
        merge(support, {"limits": {"silence_timeout_seconds": 2}})
    assert [i.field for i in err.value.issues] == ["agent_overrides.limits.silence_timeout_seconds"]
    with pytest.raises(OverrideError) as err:
        merge(support, {"limits": {"max_duration_seconds": 20, "wrap_up_seconds": 30}})
    assert "wrap_up_seconds must be less than max_duration_seconds" in str(err.value)
    with pytest.raises(OverrideError) as err:
        merge(support, {"limits": {"hold_music": "jazz"}})
    assert err.value.issues[0].field == "agent_overrides.limits.hold_music"
