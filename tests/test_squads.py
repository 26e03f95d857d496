"""Workforce (squad) calls in text mode: routing, context policies, tools, max_handoffs, voices.

The session is the worker's own (``build_session``); each member's plugins are replaced, through
the pipeline-factory seam, by a scripted fake LLM and a silent fake TTS built from that member's
effective agent. Members are told apart by their agent definition id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession, APIConnectOptions, llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Agent, Definitions
from convoi.pipeline import Pipeline
from convoi.pipeline.voices import resolve_voice
from convoi.reporting.events import Handoff
from convoi.settings import WorkerSettings
from convoi.squads import SquadMemberAgent, SquadRuntime
from convoi.squads.runtime import refusal_message
from convoi.squads.tools import REASON_DESCRIPTION
from convoi.worker.session import build_session
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import SQUAD, UAE_LINE

PHONE = UAE_LINE
CONFIG = Path("agents_config")
TIMEOUT = 30.0

TRIAGE_GREETING = "Hi Ahmed, this is Convoi. Are you calling about billing, or do you need support?"
BILLING_GREETING = "Thanks Ahmed, I'm the billing specialist. What's the question about your bill?"
SUPPORT_GREETING = "Hi Ahmed, support here. What seems to be the problem?"


def squad_call(defs: Definitions, **fields: Any) -> ResolvedCall:
    spec = {
        "call_id": "call_squad0001",
        "type": "outbound_phone",
        "agent_id": SQUAD,
        "customer": {"number": "+971501234567", "name": "Ahmed"},
        "phone_number_id": PHONE,
        **fields,
    }
    return resolve_call(spec, defs)


def edited_config(tmp_path: Path, edits: dict[str, Callable[[str], str]]) -> Definitions:
    """A copy of the shipped agents_config with some files edited (path → text → text)."""
    root = tmp_path / "agents_config"
    shutil.copytree(CONFIG, root)
    for relative, edit in edits.items():
        path = root / relative
        path.write_text(edit(path.read_text()))
    return load_definitions(root).definitions


def transfer(to: str, reason: str, *, when: str | None = None) -> Reply:
    return Reply(tool=f"transfer_to_{to}", arguments=json.dumps({"reason": reason}), when=when)


class FakeTTS(tts.TTS):
    """A TTS that remembers its voice; text-mode sessions never synthesize."""

    def __init__(self, voice_id: str) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=24_000, num_channels=1
        )
        self.voice_id = voice_id

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        raise NotImplementedError("text mode: nothing is synthesized")


class SquadHarness:
    """Pipeline factory giving each member its own scripted LLM and fake TTS."""

    def __init__(self, defs: Definitions, scripts: dict[str, list[Reply]]) -> None:
        squad = defs.squads[SQUAD]
        self.member_of = {m.agent_id: key for key, m in squad.members.items()}
        self.scripts = scripts
        self.llms: dict[str, ScriptedLLM] = {}
        self.tts: dict[str, FakeTTS] = {}
        self.agents: dict[str, Agent] = {}
        self.squad: SquadRuntime | None = None

    def factory(self, agent: Agent, settings: WorkerSettings) -> Pipeline:
        member = self.member_of[agent.id]
        assert member not in self.llms, "one pipeline per member"
        self.agents[member] = agent
        self.llms[member] = ScriptedLLM(
            self.scripts.get(member, []), model=agent.llm.model, temperature=agent.llm.temperature
        )
        self.tts[member] = FakeTTS(agent.tts.voice_id)
        return Pipeline(stt=None, llm=self.llms[member], tts=self.tts[member])

    def session(self, call: ResolvedCall) -> tuple[AgentSession[Any], Any]:
        built = build_session(call, WorkerSettings(), vad=None, pipeline_factory=self.factory)
        self.squad = built.squad
        return built.session, built.agent


def user_texts(request_messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in request_messages if m["role"] == "user"]


async def wait_for_message(session: AgentSession[Any], text: str) -> llm.ChatMessage:
    """Wait (event-driven) until an assistant message with ``text`` is in the history."""
    loop = asyncio.get_running_loop()
    found: asyncio.Future[llm.ChatMessage] = loop.create_future()

    def matches(item: Any) -> bool:
        return (
            isinstance(item, llm.ChatMessage)
            and item.role == "assistant"
            and item.text_content == text
        )

    def on_item(ev: Any) -> None:
        if matches(ev.item) and not found.done():
            found.set_result(ev.item)

    session.on("conversation_item_added", on_item)
    try:
        for item in session.history.items:
            if matches(item):
                return item
        return await asyncio.wait_for(found, TIMEOUT)
    finally:
        session.off("conversation_item_added", on_item)


async def test_triage_routes_to_billing_which_greets_and_answers_with_its_own_llm(
    defs: Definitions,
) -> None:
    harness = SquadHarness(
        defs,
        {
            "triage": [transfer("billing", "charged twice this month", when="charged")],
            "billing": [Reply("Your refund is on its way.", when="refund")],
        },
    )
    session, agent = harness.session(squad_call(defs))
    async with session:
        await session.start(agent)
        await wait_for_message(session, TRIAGE_GREETING)
        assert session.current_agent.id == "triage"

        before = time.time()
        result = await session.run(user_input="I was charged twice this month")
        result.expect.next_event().is_function_call(
            name="transfer_to_billing", arguments={"reason": "charged twice this month"}
        )
        result.expect.next_event().is_function_call_output()
        result.expect.next_event().is_agent_handoff(new_agent_type=SquadMemberAgent)
        greeting = result.expect.next_event().is_message(role="assistant").event().item
        assert greeting.text_content == BILLING_GREETING
        result.expect.no_more_events()
        after = time.time()

        answer = await session.run(user_input="Can I get a refund?")
        reply = answer.expect.next_event().is_message(role="assistant").event().item
        assert reply.text_content == "Your refund is on its way."

    squad = harness.squad
    assert squad is not None
    assert squad.current_member == "billing" == session.current_agent.id
    [record] = squad.handoffs
    assert isinstance(record, Handoff)
    assert (record.from_member, record.to_member, record.reason) == (
        "triage",
        "billing",
        "charged twice this month",
    )
    assert before <= record.at <= after
    # the transfer was the triage LLM's last word: no extra reply after the handoff
    assert len(harness.llms["triage"].requests) == 1
    assert len(harness.llms["billing"].requests) == 1
    assert (
        harness.llms["billing"]
        .requests[0]
        .messages[0]["content"]
        .startswith("You are Convoi's billing specialist on a voice call with Ahmed.")
    )


@pytest.mark.parametrize(
    ("policy", "carried"),
    [
        (
            "context_policy: all",
            [TRIAGE_GREETING, "Hello there", "Is it about billing or support?", "I was charged"],
        ),
        (
            "context_policy: last_n\ncontext_last_n: 2",
            ["Is it about billing or support?", "I was charged"],
        ),
        ("context_policy: none", []),
    ],
    ids=["all", "last_n", "none"],
)
async def test_context_policy_decides_what_the_new_member_knows(
    tmp_path: Path, policy: str, carried: list[str]
) -> None:
    defs = edited_config(
        tmp_path,
        {"squads/customer_care.yaml": lambda text: text.replace("context_policy: all", policy)},
    )
    harness = SquadHarness(
        defs,
        {
            "triage": [
                Reply("Is it about billing or support?", when="hello"),
                transfer("billing", "double charge", when="charged"),
            ],
            "billing": [Reply("Let me check that refund.", when="refund")],
        },
    )
    session, agent = harness.session(squad_call(defs))
    async with session:
        await session.start(agent)
        await wait_for_message(session, TRIAGE_GREETING)
        await session.run(user_input="Hello there")
        await session.run(user_input="I was charged")
        await session.run(user_input="Can I get a refund?")

    first = harness.llms["billing"].requests[0].messages
    system, *conversation = first
    assert system["role"] == "system"
    assert system["content"].startswith("You are Convoi's billing specialist")
    assert all(m["role"] != "system" for m in conversation)  # triage's instructions are gone
    assert [m["content"] for m in conversation] == [
        *carried,
        BILLING_GREETING,
        "Can I get a refund?",
    ]


def test_each_member_has_a_transfer_tool_per_destination_and_no_other(defs: Definitions) -> None:
    squad = defs.squads[SQUAD]
    runtime = SquadRuntime(squad_call(defs), WorkerSettings(), SquadHarness(defs, {}).factory)
    tools = {
        key: {tool.info.name: tool for tool in runtime.member_agent(key).tools}  # type: ignore[union-attr]
        for key in squad.members
    }
    assert {key: set(names) for key, names in tools.items()} == {
        "triage": {"end_call", "transfer_to_billing", "transfer_to_support"},
        "billing": {"end_call", "transfer_to_support"},
        "support": {"end_call", "transfer_to_billing"},
    }
    for key, member in squad.members.items():
        for handoff in member.handoffs:
            schema = tools[key][f"transfer_to_{handoff.to}"].info.raw_schema
            assert schema["description"] == handoff.description
            assert schema["parameters"]["required"] == ["reason"]
            assert schema["parameters"]["properties"] == {
                "reason": {"type": "string", "description": REASON_DESCRIPTION}
            }

    # a member without handoffs cannot transfer at all
    lone = squad.model_copy(
        update={
            "members": {
                **squad.members,
                "support": squad.members["support"].model_copy(update={"handoffs": ()}),
            }
        }
    )
    lone_defs = defs.model_copy(update={"squads": {**defs.squads, SQUAD: lone}})
    runtime = SquadRuntime(
        squad_call(lone_defs), WorkerSettings(), SquadHarness(lone_defs, {}).factory
    )
    assert [t.info.name for t in runtime.member_agent("support").tools] == ["end_call"]  # type: ignore[union-attr]


async def test_the_llm_is_offered_only_its_members_transfer_tools(defs: Definitions) -> None:
    harness = SquadHarness(
        defs,
        {
            "triage": [transfer("support", "app crashes", when="crash")],
            "support": [Reply("Try reinstalling.", when="still")],
        },
    )
    session, agent = harness.session(squad_call(defs))
    async with session:
        await session.start(agent)
        await wait_for_message(session, TRIAGE_GREETING)
        await session.run(user_input="My app keeps crashing")
        await wait_for_message(session, SUPPORT_GREETING)
        await session.run(user_input="It still crashes")
    assert sorted(harness.llms["triage"].requests[0].tools) == [
        "end_call",
        "transfer_to_billing",
        "transfer_to_support",
    ]
    assert sorted(harness.llms["support"].requests[0].tools) == ["end_call", "transfer_to_billing"]
    assert session.current_agent.id == "support"


def _no_greeting(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("first_message:"))


def _ping_pong_squad(text: str) -> str:
    text = text.replace("max_handoffs: 6", "max_handoffs: 3")
    # billing and support open with a generated line instead of a greeting
    return "\n".join(
        line
        for line in text.splitlines()
        if "overrides:" not in line and "first_message" not in line
    )


async def test_a_billing_support_ping_pong_is_stopped_by_max_handoffs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    defs = edited_config(
        tmp_path,
        {
            "squads/customer_care.yaml": _ping_pong_squad,
            "agents/billing.yaml": _no_greeting,
            "agents/support.yaml": _no_greeting,
        },
    )
    assert defs.squads[SQUAD].max_handoffs == 3
    harness = SquadHarness(
        defs,
        {
            "triage": [transfer("billing", "a charge", when="charge")],
            # each one hands the caller straight back: a loop only max_handoffs stops
            "billing": [
                transfer("support", "sounds technical"),
                Reply("I'll sort out your question myself."),
            ],
            "support": [transfer("billing", "sounds like money")],
        },
    )
    session, agent = harness.session(squad_call(defs))
    caplog.set_level(logging.WARNING, logger="convoi.squads")
    async with session:
        await session.start(agent)
        await wait_for_message(session, TRIAGE_GREETING)
        await session.run(user_input="A question about a charge")
        await wait_for_message(session, "I'll sort out your question myself.")

        squad = harness.squad
        assert squad is not None
        assert [(h.from_member, h.to_member) for h in squad.handoffs] == [
            ("triage", "billing"),
            ("billing", "support"),
            ("support", "billing"),
        ]
        assert squad.current_member == "billing" == session.current_agent.id
        assert squad.refused == 1
        outputs = [
            item.output
            for item in session.history.items
            if isinstance(item, llm.FunctionCallOutput)
        ]
        assert outputs[-1] == refusal_message(3)
        assert "Transfer refused: this call already had 3 transfers" in outputs[-1]
        assert "max_handoffs" in outputs[-1]
        # the caller stays with billing, which keeps talking
        result = await session.run(user_input="So what about it?")
        result.expect.next_event().is_message(role="assistant")
        assert session.current_agent.id == "billing"
        assert len(squad.handoffs) == 3

    # billing's LLM read the refusal and answered instead of transferring
    last = harness.llms["billing"].requests[-1]
    assert last.messages[-1]["role"] == "user"
    assert any("max_handoffs reached" in r.getMessage() for r in caplog.records)
    # the generated opener was asked for with the handoff reason
    opener = harness.llms["billing"].requests[0].messages
    assert (
        "transferred to you from your colleague (triage) because: a charge" in opener[-1]["content"]
    )


async def test_each_member_speaks_with_its_own_voice(defs: Definitions) -> None:
    harness = SquadHarness(defs, {"triage": [transfer("billing", "refund", when="refund")]})
    session, agent = harness.session(squad_call(defs))
    async with session:
        await session.start(agent)
        await wait_for_message(session, TRIAGE_GREETING)
        assert session.current_agent.tts.voice_id == "josh"
        await session.run(user_input="I need a refund")
        assert session.current_agent.id == "billing"
        assert session.current_agent.tts is harness.tts["billing"]
        assert session.current_agent.tts.voice_id == "adam"
    assert {k: t.voice_id for k, t in harness.tts.items()} == {
        "triage": "josh",
        "billing": "adam",
        "support": "rachel",
    }


def test_real_elevenlabs_plugins_get_each_members_voice(defs: Definitions) -> None:
    settings = WorkerSettings(OPENAI_API_KEY="k", DEEPGRAM_API_KEY="k", ELEVEN_API_KEY="k")
    runtime = SquadRuntime(squad_call(defs), settings)
    voices = {
        key: runtime.member_agent(key).tts._opts.voice_id  # type: ignore[union-attr]
        for key in ("triage", "billing", "support")
    }
    assert voices == {
        "triage": resolve_voice("josh"),
        "billing": resolve_voice("adam"),
        "support": resolve_voice("rachel"),
    }


def test_precedence_definition_then_member_overrides_then_call_overrides(
    defs: Definitions,
) -> None:
    harness = SquadHarness(defs, {})
    runtime = SquadRuntime(
        squad_call(defs, agent_overrides={"llm": {"temperature": 0.9}}),
        WorkerSettings(),
        harness.factory,
    )
    members = {key: runtime.member_agent(key) for key in ("triage", "billing", "support")}
    # definition: triage's own greeting; member overrides: billing's and support's
    assert {k: a.effective.greeting for k, a in members.items()} == {
        "triage": TRIAGE_GREETING,
        "billing": BILLING_GREETING,
        "support": SUPPORT_GREETING,
    }
    assert members["billing"].instructions.startswith("You are Convoi's billing specialist")
    # call overrides reach every member, on top of each definition
    assert {k: (h.model, h.temperature) for k, h in harness.llms.items()} == {
        k: ("gpt-4o-mini", 0.9) for k in members
    }
    assert {k: a.llm for k, a in members.items()} == harness.llms

    # a call-level first_message beats the member overrides, for every member
    call = squad_call(defs, agent_overrides={"first_message": "Hello {name}, one moment."})
    runtime = SquadRuntime(call, WorkerSettings(), SquadHarness(defs, {}).factory)
    assert {runtime.member_agent(k).effective.greeting for k in members} == {
        "Hello Ahmed, one moment."
    }


def test_a_squad_on_a_web_call_is_refused(defs: Definitions) -> None:
    with pytest.raises(CallSpecError) as caught:
        resolve_call({"call_id": "call_web00001", "type": "web", "agent_id": SQUAD}, defs)
    assert (caught.value.reason, caught.value.field) == ("invalid_request", "agent_id")
