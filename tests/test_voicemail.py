"""Voicemail detection (``convoi.worker.voicemail``) against fake AMD results, the agent's
greeting gate in a text-mode session, and the LLM emulator's answer to AMD's request.

The real detector (livekit-agents' AMD over the SIP bridge) runs in tests/test_e2e_voicemail.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from livekit.agents import AgentSession, llm
from livekit.agents.llm import StopResponse
from livekit.agents.voice.amd import AMDCategory, AMDPredictionEvent
from livekit.agents.voice.amd.classifier import AMD_PROMPT
from livekit.plugins import openai

from convoi.agent import DetachedControls
from convoi.callspec import resolve_call
from convoi.definitions.models import Agent, Definitions, Voicemail
from convoi.devstack.emulators import running_emulators
from convoi.devstack.emulators.amd_answer import classify_greeting
from convoi.devstack.emulators.scenario import Scenario
from convoi.pipeline import Pipeline
from convoi.reporting.events import VoicemailReport
from convoi.settings import WorkerSettings
from convoi.worker.log import PiiFieldsFilter
from convoi.worker.session import build_session
from convoi.worker.voicemail import (
    VoicemailDetection,
    decide,
    detection_for,
    detection_options,
    voicemail_message,
)
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import SALES, SUPPORT, US_LINE

TIMEOUT = 30.0
ANSWERED_AT = 1_000.0
MESSAGE = "Hi Ahmed, sorry I missed you."


class Clock:
    def __init__(self, now: float = ANSWERED_AT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeHandle:
    """A speech handle whose playout the test finishes."""

    def __init__(self) -> None:
        self.played = asyncio.Event()

    async def wait_for_playout(self) -> None:
        await self.played.wait()


class FakeSession:
    """What the detection uses of an AgentSession: its live options and ``say``."""

    def __init__(self) -> None:
        self.options = _Options()
        self.said: list[tuple[str, bool]] = []
        self.spoke = asyncio.Event()
        self.handle = FakeHandle()

    def say(self, text: str, *, allow_interruptions: bool, add_to_chat_ctx: bool) -> FakeHandle:
        self.said.append((text, allow_interruptions))
        self.spoke.set()
        return self.handle


@dataclass
class _Options:
    preemptive_generation: dict[str, Any] = field(default_factory=lambda: {"enabled": True})


class FakeDetector:
    """AMD as the detection drives it: entered, executed (the test decides the result), left."""

    def __init__(self) -> None:
        self.result: asyncio.Future[AMDPredictionEvent] = asyncio.Future()
        self.entered = asyncio.Event()
        self.left = False
        self.args: tuple[Any, ...] = ()

    def factory(self, *args: Any) -> FakeDetector:
        self.args = args
        return self

    async def __aenter__(self) -> FakeDetector:
        self.entered.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.left = True

    async def execute(self) -> AMDPredictionEvent:
        return await self.result

    def settle(self, category: AMDCategory, reason: str = "llm") -> None:
        self.result.set_result(
            AMDPredictionEvent(
                speech_duration=1.0, category=category, reason=reason, transcript="", delay=0.0
            )
        )


@dataclass
class Harness:
    options: Voicemail
    session: FakeSession = field(default_factory=FakeSession)
    detector: FakeDetector = field(default_factory=FakeDetector)
    clock: Clock = field(default_factory=Clock)
    ends: list[tuple[str, bool]] = field(default_factory=list)
    reports: list[VoicemailReport] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def end_soon(self, reason: str, *, drain: bool = False) -> None:
        self.ends.append((reason, drain))
        self.ended.set()

    def detection(self, **kwargs: Any) -> VoicemailDetection:
        return VoicemailDetection(
            cast(AgentSession[Any], self.session),
            self.options,
            model=cast(llm.LLM[Any], object()),
            identity="phone-15550000007",
            message=MESSAGE,
            answered_at=ANSWERED_AT,
            end_soon=self.end_soon,  # type: ignore[arg-type]
            on_report=self.reports.append,
            detector_factory=self.detector.factory,  # type: ignore[arg-type]
            clock=self.clock,
            **kwargs,
        )


LEAVE = Voicemail(action="leave_message", message="Hi <name>, sorry I missed you.")
HANG_UP = Voicemail(action="hang_up")


# -- the pure parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "options", "action"),
    [
        ("human", LEAVE, "greeted"),
        ("uncertain", HANG_UP, "greeted"),
        ("machine-vm", LEAVE, "left_message"),
        ("machine-ivr", LEAVE, "left_message"),
        ("machine-vm", HANG_UP, "hung_up"),
        ("machine-unavailable", LEAVE, "hung_up"),  # a full mailbox takes no message
        ("machine-unavailable", HANG_UP, "hung_up"),
    ],
)
def test_each_verdict_decides_what_the_agent_does(
    verdict: Any, options: Voicemail, action: str
) -> None:
    assert decide(verdict, options) == action


def test_our_options_become_amds_detection_options() -> None:
    options = Voicemail(no_speech_seconds=2.5, max_detection_seconds=9.0)
    assert detection_options(options) == {"no_speech_threshold": 2.5, "timeout": 9.0}


def _with_voicemail(defs: Definitions, agent_id: str, options: Voicemail | None) -> Definitions:
    agent = defs.agents[agent_id].model_copy(update={"voicemail": options})
    return defs.model_copy(update={"agents": {**defs.agents, agent_id: agent}})


def test_the_message_is_rendered_with_the_greetings_placeholders(defs: Definitions) -> None:
    defs = _with_voicemail(defs, SALES, LEAVE)
    spec = {
        "call_id": "call_vm0001",
        "type": "outbound_phone",
        "agent_id": SALES,
        "customer": {"number": "+15550000007", "name": "Ahmed"},
        "phone_number_id": US_LINE,
    }
    assert voicemail_message(resolve_call(spec, defs)) == MESSAGE
    spec["customer"] = {"number": "+15550000007"}
    assert voicemail_message(resolve_call(spec, defs)) == "Hi there, sorry I missed you."


def test_only_outbound_calls_of_agents_with_voicemail_detect(defs: Definitions) -> None:
    with_vm = _with_voicemail(_with_voicemail(defs, SALES, LEAVE), SUPPORT, LEAVE)
    phone = {
        "call_id": "call_vm0002",
        "type": "outbound_phone",
        "agent_id": SALES,
        "customer": {"number": "+15550000007"},
        "phone_number_id": US_LINE,
    }
    web = {"call_id": "call_vm0003", "type": "web", "agent_id": SUPPORT}
    model = ScriptedLLM([])

    def detection(spec: dict[str, Any], definitions: Definitions) -> VoicemailDetection | None:
        return detection_for(
            resolve_call(spec, definitions),
            cast(AgentSession[Any], FakeSession()),
            model,
            identity="phone-15550000007",
            answered_at=ANSWERED_AT,
            end_soon=lambda *a, **k: None,
            on_report=lambda report: None,
        )

    assert detection(phone, with_vm) is not None
    assert detection(web, with_vm) is None  # web calls never detect
    assert detection(phone, defs) is None  # the shipped sales agent has no voicemail


# -- the detection against fake AMD results -------------------------------------------------


async def test_a_person_is_greeted_once_the_verdict_is_in() -> None:
    h = Harness(LEAVE)
    detection = h.detection()
    detection.start()
    assert h.session.options.preemptive_generation["enabled"] is False  # held meanwhile
    greet = asyncio.create_task(detection.wait_to_greet())
    await asyncio.wait_for(h.detector.entered.wait(), TIMEOUT)
    assert not greet.done()  # the greeting waits for the verdict
    h.clock.now = ANSWERED_AT + 1.25
    h.detector.settle(AMDCategory.HUMAN, "short_greeting")
    assert await asyncio.wait_for(greet, TIMEOUT) is True
    assert h.reports == [
        VoicemailReport(
            verdict="human", reason="short_greeting", detection_seconds=1.25, action="greeted"
        )
    ]
    assert h.ends == [] and h.session.said == []
    assert h.detector.left  # AMD is closed after its verdict
    assert h.session.options.preemptive_generation["enabled"] is True  # given back
    identity = h.detector.args[3]
    assert identity == "phone-15550000007"


async def test_leave_message_says_it_whole_then_ends_drained() -> None:
    h = Harness(LEAVE)
    detection = h.detection()
    detection.start()
    h.clock.now = ANSWERED_AT + 6.5
    h.detector.settle(AMDCategory.MACHINE_VM)
    assert await asyncio.wait_for(detection.wait_to_greet(), TIMEOUT) is False
    assert h.reports[0].model_dump() == {
        "verdict": "machine-vm",
        "reason": "llm",
        "detection_seconds": 6.5,
        "action": "left_message",
    }
    await asyncio.wait_for(h.session.spoke.wait(), TIMEOUT)  # right after the verdict
    assert h.session.said == [(MESSAGE, False)]  # uninterruptible
    assert h.ends == []  # not before the message played out
    h.session.handle.played.set()
    await asyncio.wait_for(h.ended.wait(), TIMEOUT)
    assert h.ends == [("voicemail", True)]


@pytest.mark.parametrize(
    ("options", "category"),
    [(HANG_UP, AMDCategory.MACHINE_VM), (LEAVE, AMDCategory.MACHINE_UNAVAILABLE)],
    ids=["hang_up", "mailbox_full"],
)
async def test_hang_up_ends_the_call_at_once_saying_nothing(
    options: Voicemail, category: AMDCategory
) -> None:
    h = Harness(options)
    detection = h.detection()
    detection.start()
    h.detector.settle(category)
    await asyncio.wait_for(h.ended.wait(), TIMEOUT)
    assert h.ends == [("voicemail", False)]
    assert h.session.said == []
    assert h.reports[0].action == "hung_up"
    assert await detection.wait_to_greet() is False


async def test_a_failing_detector_still_greets() -> None:
    h = Harness(HANG_UP)
    h.detector.result.set_exception(RuntimeError("amd closed before a result was available"))
    detection = h.detection()
    detection.start()
    assert await asyncio.wait_for(detection.wait_to_greet(), TIMEOUT) is True
    assert (h.reports[0].verdict, h.reports[0].reason) == ("uncertain", "error")


async def test_a_detector_that_never_decides_is_bounded() -> None:
    h = Harness(Voicemail(max_detection_seconds=2.0))
    detection = h.detection(detection_grace=0.0)
    detection.start()
    assert await asyncio.wait_for(detection.wait_to_greet(), TIMEOUT) is True
    assert (h.reports[0].verdict, h.reports[0].reason) == ("uncertain", "worker_timeout")


async def test_a_call_ending_before_the_verdict_calls_the_greeting_off() -> None:
    h = Harness(LEAVE)
    detection = h.detection()
    detection.start()
    await asyncio.wait_for(h.detector.entered.wait(), TIMEOUT)
    detection.stop()
    assert await asyncio.wait_for(detection.wait_to_greet(), TIMEOUT) is False
    assert h.reports == [] and h.ends == []


def _turn(stopped_at: float | None) -> llm.ChatMessage:
    message = llm.ChatMessage(role="user", content=["Hello?"])
    if stopped_at is not None:
        message.metrics = {
            "started_speaking_at": stopped_at - 0.5,
            "stopped_speaking_at": stopped_at,
        }
    return message


async def test_turns_before_the_greeting_get_no_reply() -> None:
    h = Harness(LEAVE)
    detection = h.detection()
    detection.start()
    assert detection.heard_before_greeting(_turn(ANSWERED_AT + 1.0))  # still detecting
    h.clock.now = ANSWERED_AT + 2.0
    h.detector.settle(AMDCategory.HUMAN)
    await detection.wait_to_greet()
    assert detection.heard_before_greeting(_turn(ANSWERED_AT + 1.0))  # "Hello?" before
    assert not detection.heard_before_greeting(_turn(ANSWERED_AT + 3.0))  # a real turn
    assert not detection.heard_before_greeting(_turn(None))


async def test_a_machine_gets_no_reply_at_all() -> None:
    h = Harness(LEAVE)
    detection = h.detection()
    detection.start()
    h.detector.settle(AMDCategory.MACHINE_VM)
    await detection.wait_to_greet()
    assert detection.heard_before_greeting(_turn(ANSWERED_AT + 60.0))


# -- the agent's greeting gate, in a text-mode session --------------------------------------


class GatedControls(DetachedControls):
    """Controls whose greeting waits for the test, holding every turn before it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.held: list[str] = []

    async def wait_to_greet(self) -> bool:
        return await self.gate

    def heard_before_greeting(self, message: llm.ChatMessage) -> bool:
        if self.gate.done():
            return False
        self.held.append(message.text_content or "")
        return True


def _phone_session(defs: Definitions, controls: GatedControls, replies: list[Reply]) -> Any:
    spec = {
        "call_id": "call_vm0004",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Ahmed",
    }
    scripted = ScriptedLLM(replies)

    def factory(agent: Agent, settings: WorkerSettings) -> Pipeline:
        return Pipeline(stt=None, llm=scripted, tts=None)

    built = build_session(
        resolve_call(spec, defs),
        WorkerSettings(),
        vad=None,
        controls=controls,
        pipeline_factory=factory,
    )
    return built, scripted


def _next_assistant_message(session: AgentSession[Any]) -> asyncio.Future[llm.ChatMessage]:
    done: asyncio.Future[llm.ChatMessage] = asyncio.get_running_loop().create_future()

    def on_item(ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role == "assistant" and not done.done():
            done.set_result(item)

    session.on("conversation_item_added", on_item)
    return done


@contextlib.asynccontextmanager
async def _released(controls: GatedControls) -> AsyncIterator[None]:
    """Whatever happens, release the greeting (a session closes only once on_enter is done)."""
    try:
        yield
    finally:
        if not controls.gate.done():
            controls.gate.set_result(False)


def _assistant_texts(session: AgentSession[Any]) -> list[str]:
    return [
        item.text_content or ""
        for item in session.history.items
        if isinstance(item, llm.ChatMessage) and item.role == "assistant"
    ]


async def test_the_agent_greets_only_when_the_call_allows_it(defs: Definitions) -> None:
    controls = GatedControls()
    (session, agent, _), scripted = _phone_session(defs, controls, [Reply("Sure.")])
    async with session, _released(controls):
        await session.start(agent)
        hello = llm.ChatMessage(role="user", content=["Hello?"])
        with pytest.raises(StopResponse):  # heard while the greeting is held: no reply
            await agent.on_user_turn_completed(agent.chat_ctx.copy(), new_message=hello)
        assert controls.held == ["Hello?"]
        assert agent.chat_ctx.messages()[-1].text_content == "Hello?"  # kept in the context
        assert _assistant_texts(session) == []  # no greeting before the call allows it
        greeted = _next_assistant_message(session)
        controls.gate.set_result(True)
        greeting = await asyncio.wait_for(greeted, TIMEOUT)
        assert (greeting.text_content or "").startswith("Hi Ahmed, thanks for calling")
        later = llm.ChatMessage(role="user", content=["What are your hours?"])
        await agent.on_user_turn_completed(agent.chat_ctx.copy(), new_message=later)  # replied
        assert scripted.requests == []  # the greeting was spoken, not generated


async def test_no_greeting_for_a_machine(defs: Definitions) -> None:
    controls = GatedControls()
    controls.gate.set_result(False)
    (session, agent, _), _ = _phone_session(defs, controls, [])
    async with session:
        await session.start(agent)
        await session.say("Sorry I missed you.", add_to_chat_ctx=True).wait_for_playout()
        assert _assistant_texts(session) == ["Sorry I missed you."]


# -- the LLM emulator answers AMD's request --------------------------------------------------


@pytest.mark.parametrize(
    ("transcript", "label"),
    [
        ("Hi, you've reached Ahmed. Please leave a message after the tone.", "machine-vm"),
        ("I'm away from my desk, I will get back to you.", "machine-vm"),
        ("The mailbox is full and cannot accept any messages. Goodbye.", "machine-unavailable"),
        ("For sales, press 1. For support, press 2.", "machine-ivr"),
        ("Hello?", "human"),
        ("This is Lisa.", "human"),
    ],
)
def test_the_emulator_classifies_greetings_like_a_model(transcript: str, label: str) -> None:
    assert classify_greeting(transcript) == label


async def save_prediction(label: str) -> None:
    """Save the prediction to the verdict."""


async def postpone_termination(seconds: float) -> str:
    """Postpone the termination of the classification task."""
    return ""


async def _classify(base_url: str, transcript: str) -> tuple[str, dict[str, Any]]:
    model = openai.LLM(base_url=base_url, api_key="test", model="gpt-4o")
    ctx = llm.ChatContext(
        items=[
            llm.ChatMessage(role="system", content=[AMD_PROMPT]),
            llm.ChatMessage(role="user", content=[transcript]),
        ]
    )
    tools = [llm.function_tool(save_prediction), llm.function_tool(postpone_termination)]
    try:
        response = await model.chat(chat_ctx=ctx, tools=tools, tool_choice="required").collect()
    finally:
        await model.aclose()
    (call,) = response.tool_calls
    return call.name, json.loads(call.arguments)


@pytest.mark.timeout(60)
async def test_the_llm_emulator_answers_amds_request() -> None:
    scenario = Scenario.model_validate(
        {
            "default_reply": "Sure.",
            "llm": [
                {"when": {"last_user_contains": "hello"}, "say": "Hi there!"},  # not a tool call
                {
                    "when": {"system_contains": "Classify the call greeting"},
                    "tool_call": {"name": "save_prediction", "arguments": {"label": "machine-ivr"}},
                    "max_uses": 1,
                },
            ],
        }
    )
    async with running_emulators(scenario=scenario) as emu:
        # the scripted classification first (the text rule cannot answer a required tool call)
        assert await _classify(emu.openai_base_url, "Hello?") == (
            "save_prediction",
            {"label": "machine-ivr"},
        )
        # then, with no rule left, the emulator's own label
        assert await _classify(emu.openai_base_url, "Please leave a message after the tone.") == (
            "save_prediction",
            {"label": "machine-vm"},
        )


# -- logs ------------------------------------------------------------------------------------


def test_livekits_pii_fields_are_dropped_from_log_records() -> None:
    record = logging.LogRecord(
        "livekit.agents", logging.INFO, __file__, 1, "amd prediction", (), None
    )
    record.__dict__.update({"lk.pii.transcript": "Hi, you've reached Ahmed.", "category": "human"})
    assert PiiFieldsFilter().filter(record) is True
    assert "lk.pii.transcript" not in vars(record) and record.__dict__["category"] == "human"
