"""Unpriced models and voices that do not resolve are refused at dispatch, by one check.

The same rule (:mod:`convoi.definitions.pricing`, :mod:`convoi.definitions.voices`) answers in
three places: :func:`resolve_call` (``CallSpecError`` naming the override field), the control
plane (422 ``invalid_request`` with that field) and the worker (``failed`` / ``invalid_request``
in ``call.ended``, before the room is touched). Loading the definitions is in test_definitions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from convoi.callspec import CallSpecError, resolve_call
from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions
from convoi.definitions.pricing import unpriced_models
from convoi.worker.call import Call
from tests.helpers import AGENTS_CONFIG, SQUAD, SUPPORT, US_LINE
from tests.test_call import FakeJob, Scripted, ended, reported, resources, statuses, web_spec
from tests.test_controlplane_api import Api, api, assert_error  # noqa: F401  (api: a fixture)

PRICED_LLMS = "gpt-4.1-mini, gpt-4o, gpt-4o-mini"


def web(**overrides: Any) -> dict[str, Any]:
    return {"call_id": "call_priced0001", "type": "web", "agent_id": SUPPORT,
            "agent_overrides": overrides}  # fmt: skip


def squad_call(**overrides: Any) -> dict[str, Any]:
    return {
        "call_id": "call_priced0002",
        "type": "outbound_phone",
        "squad_id": SQUAD,
        "phone_number_id": US_LINE,
        "customer": {"number": "+15550000002", "name": "Ahmed"},
        "agent_overrides": overrides,
    }


def refused(spec: dict[str, Any], defs: Definitions) -> CallSpecError:
    with pytest.raises(CallSpecError) as info:
        resolve_call(json.dumps(spec), defs)
    return info.value


def test_the_shipped_definitions_are_all_priced() -> None:
    defs = load_definitions(AGENTS_CONFIG).definitions
    assert defs.agents
    for agent in defs.agents.values():
        assert unpriced_models(agent, defs.prices) == [], agent.id


@pytest.mark.parametrize(
    ("overrides", "field", "problem"),
    [
        (
            {"llm": {"model": "gpt-9-ultra"}},
            "agent_overrides.llm.model",
            f"openai/gpt-9-ultra has no price in the price list; priced openai llm models: "
            f"{PRICED_LLMS}",
        ),
        (
            {"stt": {"model": "nova-9"}},
            "agent_overrides.stt.model",
            "deepgram/nova-9 has no price in the price list; priced deepgram stt models: "
            "nova-2, nova-3",
        ),
        (
            {"tts": {"model": "eleven_v9"}},
            "agent_overrides.tts.model",
            "elevenlabs/eleven_v9 has no price in the price list; priced elevenlabs tts models: "
            "eleven_flash_v2_5, eleven_turbo_v2_5",
        ),
        (
            {"tts": {"voice_id": "rachael"}},
            "agent_overrides.tts.voice_id",
            "unknown voice 'rachael': use an ElevenLabs voice id (20 letters and digits) or one "
            "of the names adam, antoni, bella, elli, josh, rachel",
        ),
    ],
    ids=["llm", "stt", "tts", "voice"],
)
def test_an_unpriced_model_or_unknown_voice_in_the_overrides_is_refused(
    defs: Definitions, overrides: dict[str, Any], field: str, problem: str
) -> None:
    error = refused(web(**overrides), defs)
    assert (error.field, error.problem, error.reason) == (field, problem, "invalid_request")


def test_every_unpriced_model_is_named_not_just_the_first(defs: Definitions) -> None:
    error = refused(web(llm={"model": "gpt-9-ultra"}, stt={"model": "nova-9"}), defs)
    assert [i.field for i in error.issues] == [
        "agent_overrides.llm.model",
        "agent_overrides.stt.model",
    ]


def test_a_squad_calls_overrides_are_checked_for_every_member(defs: Definitions) -> None:
    error = refused(squad_call(llm={"model": "gpt-9-ultra"}), defs)
    assert error.field == "agent_overrides.llm.model"
    assert "gpt-9-ultra" in error.problem


def test_priced_overrides_and_voice_ids_are_accepted(defs: Definitions) -> None:
    call = resolve_call(
        json.dumps(
            web(
                llm={"model": "gpt-4.1-mini"},
                stt={"model": "nova-2"},
                tts={"model": "eleven_flash_v2_5", "voice_id": "pNInz6obpgDQGcFmaJgB"},
            )
        ),
        defs,
    )
    agent = call.start_agent.agent
    assert (agent.llm.model, agent.stt.model, agent.tts.model) == (
        "gpt-4.1-mini",
        "nova-2",
        "eleven_flash_v2_5",
    )


def test_a_model_priced_in_the_price_list_is_accepted(defs: Definitions) -> None:
    """ "Unless the price list has it": pricing a model is all it takes."""
    llm = dict(defs.prices.llm)
    llm["openai"] = {**llm["openai"], "gpt-9-ultra": llm["openai"]["gpt-4o"]}
    priced = defs.model_copy(update={"prices": defs.prices.model_copy(update={"llm": llm})})
    call = resolve_call(json.dumps(web(llm={"model": "gpt-9-ultra"})), priced)
    assert call.start_agent.agent.llm.model == "gpt-9-ultra"


def test_an_unpriced_definition_built_in_code_names_the_agent(defs: Definitions) -> None:
    """Definitions from the loader are all priced; ones built in code are checked too."""
    support = defs.agents[SUPPORT]
    cheap = support.model_copy(update={"llm": support.llm.model_copy(update={"model": "gpt-x"})})
    changed = defs.model_copy(update={"agents": {**defs.agents, SUPPORT: cheap}})
    error = refused(web(first_message="Hi"), changed)
    assert error.field == f"agents.{SUPPORT}.llm.model"


def test_the_control_plane_answers_422_naming_the_override(api: Api) -> None:  # noqa: F811
    body = {
        "type": "web",
        "agent_id": SUPPORT,
        "agent_overrides": {"llm": {"model": "gpt-9-ultra"}},
    }
    error = assert_error(api.create(body), 422, "invalid_request", "agent_overrides.llm.model")
    assert "gpt-9-ultra" in error["message"] and "gpt-4o-mini" in error["message"]
    assert api.gateway.dispatches == []  # refused before any room or dispatch


async def test_the_worker_ends_the_job_invalid_request(defs: Definitions, tmp_path: Path) -> None:
    job = FakeJob()
    spec = web_spec(agent_overrides={"llm": {"model": "gpt-9-ultra"}})
    call = Call(job, spec, resources(defs, tmp_path), pipeline_factory=Scripted([]))
    await call.run()
    await job.finished()
    events = reported(tmp_path)
    assert statuses(events) == ["initiated", "failed"]
    final = ended(events)
    assert (final.status, final.ended_reason, final.fault) == (
        "failed",
        "invalid_request",
        "config",
    )
    assert final.detail is not None
    assert final.detail.startswith("agent_overrides.llm.model: openai/gpt-9-ultra has no price")
    assert not job.connected
