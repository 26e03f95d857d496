"""The phone keypad (``convoi.worker.dtmf``, ``convoi.agent.keypad``), without a room or server.

Keys the caller presses arrive as the room's ``sip_dtmf_received``; here a fake room emits them
into the worker's own session (text mode, scripted LLM). What the LLM was asked, what the agent
answered and what the transcript recorded are checked. The ``send_dtmf`` tool runs against
:class:`~convoi.agent.DetachedControls` (what it pressed) and :func:`publish_keys` against a fake
local participant (what reached the room).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import AgentSession, ToolError, llm
from livekit.agents.voice.events import UserStateChangedEvent

from convoi.agent import DetachedControls
from convoi.agent.keypad import SEND_DTMF_DESCRIPTION, parse_keys
from convoi.callspec import resolve_call
from convoi.definitions.models import Definitions
from convoi.settings import WorkerSettings
from convoi.worker.call import Call
from convoi.worker.dtmf import (
    KeyBuffer,
    KeypadInput,
    describe_keys,
    keys_message,
    publish_keys,
)
from convoi.worker.recording import DTMF_EXTRA_KEY, TranscriptRecorder
from convoi.worker.session import build_session
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import SUPPORT
from tests.test_call import (
    TIMEOUT,
    Clock,
    FakeDialer,
    FakeJob,
    FakeParticipant,
    FakeRoom,
    Scripted,
    TextRoom,
    answered,
    assistant_said,
    ended,
    phone_spec,
    reported,
    resources,
    running_web_call,
)
from tests.test_session_text import Harness

CALLER = "phone-15550000002"
PRESSED_123 = "The caller pressed the keys 1 2 3 # on their phone's keypad."


def key(digit: str, identity: str = CALLER) -> rtc.SipDTMF:
    code = "0123456789*#".index(digit)
    return rtc.SipDTMF(code=code, digit=digit, participant=FakeParticipant(identity))  # type: ignore[arg-type]


def press(room: FakeRoom, keys: str, identity: str = CALLER) -> None:
    for digit in keys:
        room.emit("sip_dtmf_received", key(digit, identity))


def with_tools(defs: Definitions, agent_id: str, tools: tuple[str, ...]) -> Definitions:
    agent = defs.agents[agent_id].model_copy(update={"tools": tools})
    return defs.model_copy(update={"agents": {**defs.agents, agent_id: agent}})


async def keypad_session(
    defs: Definitions, replies: list[Reply], **keypad: Any
) -> tuple[AgentSession[Any], ScriptedLLM, FakeRoom, KeypadInput, TranscriptRecorder]:
    """The worker's session for a support call, running, greeted, with a keypad on a fake room."""
    harness = Harness(replies)
    spec = {"call_id": "call_dtmf0001", "type": "web", "agent_id": SUPPORT}
    session, agent, _ = build_session(
        resolve_call(spec, defs), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    recorder = TranscriptRecorder(lambda: "agent")
    session.on("conversation_item_added", lambda ev: recorder.record(ev.item))
    await session.start(agent)
    await assistant_said(session, "thanks for calling Convoi support")
    room = FakeRoom("room-dtmf")
    keypad = KeypadInput(room, session, CALLER, **keypad)  # type: ignore[arg-type]
    keypad.start()
    assert harness.llm is not None
    return session, harness.llm, room, keypad, recorder


async def said_times(session: AgentSession[Any], text: str, times: int) -> None:
    """Wait (event-driven) until the agent has said exactly ``text`` ``times`` times."""

    def count() -> int:
        return sum(
            isinstance(i, llm.ChatMessage) and i.role == "assistant" and i.text_content == text
            for i in session.history.items
        )

    done = asyncio.get_running_loop().create_future()

    def on_item(_: Any) -> None:
        if count() >= times and not done.done():
            done.set_result(None)

    session.on("conversation_item_added", on_item)
    if count() < times:
        await asyncio.wait_for(done, TIMEOUT)


def last_user(request_messages: list[dict[str, Any]]) -> str:
    return str([m for m in request_messages if m["role"] == "user"][-1]["content"])


# -- pure pieces ------------------------------------------------------------------------------


def test_keys_are_described_for_the_llm_and_kept_as_digits_for_the_transcript() -> None:
    assert describe_keys("123#") == PRESSED_123
    assert describe_keys("5") == "The caller pressed the key 5 on their phone's keypad."
    message = keys_message("123#")
    assert (message.role, message.text_content) == ("user", PRESSED_123)
    assert message.extra == {DTMF_EXTRA_KEY: "123#"}
    recorder = TranscriptRecorder(lambda: "agent")
    recorder.record(message)
    [entry] = recorder.transcript
    assert (entry.role, entry.text, entry.source) == ("user", "123#", "dtmf")


def test_key_buffer_ends_an_input_on_hash_or_when_full_and_ignores_other_keys() -> None:
    buffer = KeyBuffer(max_keys=4)
    assert [buffer.press(k) for k in "12x3"] == [None, None, None, None]
    assert buffer.pending and buffer.press("#") == "123#"
    assert not buffer.pending and buffer.take() is None
    assert [buffer.press(k) for k in "*0a9"] == [None, None, None, "*0A9"]  # full
    buffer.press("7")
    assert buffer.take() == "7"  # what the timeout takes


def test_send_dtmf_accepts_only_keypad_keys() -> None:
    assert parse_keys("42") == "42"
    assert parse_keys(" 1, 2-3 # ") == "123#"
    assert parse_keys("*9#") == "*9#"
    for bad, message in (("", "no keys"), ("12a", "'a'"), ("1" * 33, "at most 32")):
        with pytest.raises(ToolError, match=message):
            parse_keys(bad)


async def test_publish_keys_sends_one_packet_per_key_with_livekits_codes() -> None:
    class Participant:
        def __init__(self) -> None:
            self.sent: list[tuple[int, str]] = []

        async def publish_dtmf(self, *, code: int, digit: str) -> None:
            self.sent.append((code, digit))

    participant = Participant()
    await publish_keys(participant, "42*#", gap=0.0)  # type: ignore[arg-type]
    assert participant.sent == [(4, "4"), (2, "2"), (10, "*"), (11, "#")]


# -- the caller's keys reach the LLM ------------------------------------------------------------


async def test_the_callers_keys_become_one_turn_at_hash_answered_by_the_agent(
    defs: Definitions,
) -> None:
    session, fake_llm, room, keypad, recorder = await keypad_session(
        defs, [Reply("You entered one two three.", when="pressed the keys")], timeout=60.0
    )
    async with session:
        press(room, "12")
        press(room, "9", identity="supervisor-7")  # not the caller: not their input
        press(room, "3#")  # '#' ends the input at once (the 60 s timeout never matters)
        await assistant_said(session, "You entered one two three.")
    assert keypad.inputs == 1
    assert last_user(fake_llm.requests[-1].messages) == PRESSED_123
    assert [(t.role, t.text, t.source) for t in recorder.transcript][1:] == [
        ("user", "123#", "dtmf"),
        ("assistant", "You entered one two three.", "voice"),
    ]


async def test_keys_without_hash_are_one_input_after_the_inter_key_pause(
    defs: Definitions,
) -> None:
    session, fake_llm, room, keypad, recorder = await keypad_session(
        defs, [Reply("Option four two.", when="pressed the keys 4 2")], timeout=0.2
    )
    async with session:
        press(room, "42")
        await assistant_said(session, "Option four two.")
        keypad.stop()
        press(room, "7#")  # the call is over: ignored
    assert keypad.inputs == 1
    assert [t.text for t in recorder.transcript if t.role == "user"] == ["42"]
    assert len(fake_llm.requests) == 1


async def test_a_phone_call_gives_its_callers_keys_to_the_agent_and_transcribes_them(
    defs: Definitions, tmp_path: Path
) -> None:
    job = FakeJob()
    room = TextRoom(job)
    call = Call(
        job,
        phone_spec(),
        resources(defs, tmp_path, FakeDialer(answered)),
        pipeline_factory=Scripted([Reply("Thanks, that's account 123.", when="pressed")]),
        start_session=room,
        clock=Clock(),
    )
    await call.run()
    assert room.session is not None
    await assistant_said(room.session, "Hi Ahmed")
    press(job.room, "123#")
    await assistant_said(room.session, "Thanks, that's account 123.")
    room.caller_leaves(CALLER)
    await job.finished()

    final = ended(reported(tmp_path))
    assert [(t.role, t.text, t.source) for t in final.transcript or []][1:] == [
        ("user", "123#", "dtmf"),
        ("assistant", "Thanks, that's account 123.", "voice"),
    ]


async def test_a_key_after_the_silence_prompt_counts_as_the_caller_answering(
    defs: Definitions, tmp_path: Path
) -> None:
    """Prompted for silence, the caller presses keys instead of speaking: the next silence is
    prompted again rather than ending the call."""
    job = FakeJob()
    room = TextRoom(job)
    call = Call(
        job,
        phone_spec(),
        resources(defs, tmp_path, FakeDialer(answered)),
        pipeline_factory=Scripted([Reply("Got it.", when="pressed")]),
        start_session=room,
        clock=Clock(),
    )
    await call.run()
    session = room.session
    assert session is not None
    await assistant_said(session, "Hi Ahmed")
    limits = defs.agents[SUPPORT].limits
    away = UserStateChangedEvent(old_state="listening", new_state="away")
    session.emit("user_state_changed", away)  # what livekit's away timer does
    await assistant_said(session, limits.silence_prompt)
    press(job.room, "5#")
    await assistant_said(session, "Got it.")
    session.emit("user_state_changed", away)  # silent again: prompted again, not hung up
    assert not call.ended
    await said_times(session, limits.silence_prompt, 2)
    room.caller_leaves(CALLER)
    await job.finished()

    final = ended(reported(tmp_path))
    said = [t.text for t in final.transcript or [] if t.role == "assistant"]
    assert said[1:] == [limits.silence_prompt, "Got it.", limits.silence_prompt]
    assert final.ended_reason == "customer_hangup"


# -- the agent presses keys -----------------------------------------------------------------------


async def test_send_dtmf_tool_presses_the_keys_and_asks_no_reply(defs: Definitions) -> None:
    defs = with_tools(defs, SUPPORT, ("end_call", "send_dtmf"))
    harness = Harness(
        [Reply(when="press 4", tool="send_dtmf", arguments='{"digits": "4 2"}'), Reply("Okay.")]
    )
    spec = {"call_id": "call_dtmf0002", "type": "web", "agent_id": SUPPORT}
    session, agent, _ = build_session(
        resolve_call(spec, defs), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    async with session:
        await session.start(agent)
        await assistant_said(session, "thanks for calling Convoi support")
        result = await session.run(user_input="To pay a bill, press 4, then 2.")
    result.expect.next_event().is_function_call(name="send_dtmf")
    result.expect.next_event().is_function_call_output(output="Pressed 4 2.", is_error=False)
    result.expect.no_more_events()  # no reply after pressing: the menu speaks next
    controls = session.userdata
    assert isinstance(controls, DetachedControls) and controls.pressed == ["42"]
    assert harness.llm is not None and "send_dtmf" in harness.llm.requests[0].tools


async def test_send_dtmf_with_other_keys_tells_the_llm_and_presses_nothing(
    defs: Definitions,
) -> None:
    defs = with_tools(defs, SUPPORT, ("send_dtmf",))
    harness = Harness(
        [Reply(when="extension", tool="send_dtmf", arguments='{"digits": "ext 12"}'), Reply("Hm.")]
    )
    spec = {"call_id": "call_dtmf0004", "type": "web", "agent_id": SUPPORT}
    session, agent, _ = build_session(
        resolve_call(spec, defs), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    async with session:
        await session.start(agent)
        await assistant_said(session, "thanks for calling Convoi support")
        result = await session.run(user_input="Dial the extension.")
    result.expect.next_event().is_function_call(name="send_dtmf")
    result.expect.next_event().is_function_call_output(is_error=True)
    result.expect.next_event().is_message(role="assistant")  # the LLM reads the error
    controls = session.userdata
    assert isinstance(controls, DetachedControls) and controls.pressed == []


async def test_send_dtmf_is_offered_only_to_agents_that_name_it(defs: Definitions) -> None:
    harness = Harness([])
    spec = {"call_id": "call_dtmf0003", "type": "web", "agent_id": SUPPORT}
    _session, agent, _ = build_session(
        resolve_call(spec, defs), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    assert [t.id for t in agent.tools] == ["end_call"]  # type: ignore[union-attr]
    _session, agent, _ = build_session(
        resolve_call(spec, with_tools(defs, SUPPORT, ("send_dtmf",))),
        WorkerSettings(),
        vad=None,
        pipeline_factory=harness.factory,
    )
    [tool] = agent.tools
    assert tool.id == "send_dtmf"  # type: ignore[union-attr]
    assert tool.info.description == SEND_DTMF_DESCRIPTION  # type: ignore[union-attr]


async def test_there_is_no_keypad_to_press_on_a_web_call(defs: Definitions, tmp_path: Path) -> None:
    call, job, room = await running_web_call(defs, tmp_path, [], Clock())
    with pytest.raises(ToolError, match="not a phone call"):
        await call.press_keys("1")
    room.caller_leaves()
    await job.finished()
