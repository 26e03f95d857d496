"""End to end: a web call's limits (short values set per call in ``agent_overrides.limits``) and
the agent's hang-up.

The scripted caller joins, hears the greeting and then says nothing (or keeps the call going); the
worker prompts, says goodbye and ends the call ``silence_timeout``, or wraps up and ends it
``max_duration``. What the caller heard and what the receiver got are checked, not timings.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from convoi.definitions.models import CallLimits
from convoi.devstack.caller import CallerScript
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, place_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

DEFAULTS = CallLimits()


def web_spec(limits: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
        "agent_overrides": {"limits": limits},
    }


async def ended_event(receiver: ReceiverProcess, call_id: str) -> dict[str, Any]:
    return (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended"))["event"]


async def test_a_silent_caller_is_prompted_then_the_call_ends_silence_timeout(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario({"caller": [], "default_reply": "Okay."})
    spec = web_spec({"silence_timeout_seconds": 5})
    report = await place_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(utterances=[], hang_up_after=False, max_wait_s=120),
        name="Dana",
        room_prefix="e2e-silence",
    )
    ended = await ended_event(receiver, spec["call_id"])

    assert (ended["status"], ended["ended_reason"]) == ("completed", "silence_timeout")
    said = [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]
    assert said[1:] == [DEFAULTS.silence_prompt, DEFAULTS.silence_goodbye]
    assert [t for t in ended["transcript"] if t["role"] == "user"] == []
    # what the caller heard last: the prompt, then the goodbye (then the room went away)
    assert report.transcript_texts(report.agent_identity)[-2:] == [
        DEFAULTS.silence_prompt,
        DEFAULTS.silence_goodbye,
    ]
    assert report.errors == []  # the caller stayed until the agent ended the call


async def test_the_call_wraps_up_and_ends_at_its_maximum_duration(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario({"caller": ["Hi, I have a question."], "default_reply": "Sure."})
    spec = web_spec({"max_duration_seconds": 20, "wrap_up_seconds": 8})
    report = await place_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(
            utterances=["Hi, I have a question."], hang_up_after=False, max_wait_s=120
        ),
        name="Dana",
        room_prefix="e2e-maxdur",
    )
    ended = await ended_event(receiver, spec["call_id"])

    assert (ended["status"], ended["ended_reason"]) == ("completed", "max_duration")
    said = [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]
    assert said[-1] == DEFAULTS.wrap_up_message
    assert (
        report.transcript_texts(report.agent_identity)[-1] == DEFAULTS.wrap_up_message
    )  # heard in full
    assert 20 <= ended["duration_seconds"] < 40  # the limit, plus the wrap-up playing out
    assert report.errors == []  # the caller stayed until the agent ended the call


async def test_the_agent_hangs_up_a_web_call_after_its_whole_goodbye_was_heard(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    goodbye = "Thanks for calling Convoi, have a wonderful day. Goodbye!"
    emulators.load_scenario(
        {
            "caller": ["That's all, bye."],
            "llm": [
                {  # as a real model does: the goodbye and the end_call tool in one answer
                    "when": {"last_user_contains": "bye"},
                    "say": goodbye,
                    "tool_call": {"name": "end_call", "arguments": {}},
                },
                {"when": {"always": True}, "say": "Is there anything else?"},
            ],
        }
    )
    spec = web_spec({})
    report = await place_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(utterances=["That's all, bye."], hang_up_after=False, max_wait_s=90),
        name="Dana",
        room_prefix="e2e-hangup",
    )
    ended = await ended_event(receiver, spec["call_id"])

    assert (ended["status"], ended["ended_reason"]) == ("completed", "agent_hangup")
    assert report.transcript_texts(report.agent_identity)[-1] == goodbye
    # the goodbye was the last speech the caller heard, over before the room went away
    # (the agent leaving and the room closing race: whichever the caller saw first ends the call)
    closed = [e.at for e in report.events if "room disconnected by the server" in e.message]
    gone = [*closed, *([report.agent_left] if report.agent_left else [])]
    assert gone and len(report.segments) >= 2, report.events
    last = report.segments[-1]
    assert last.duration_s > 1.5
    first_gone = min(g.mono for g in gone)
    assert first_gone - last.end.mono > 0.2, "the hang-up cut the goodbye short"
