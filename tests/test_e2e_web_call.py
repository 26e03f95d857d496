"""End to end on a real livekit-server: the worker conducts web calls.

Real pieces: livekit-server (pinned build), ``convoi-worker start`` as a subprocess with the real
livekit plugins, and a simulated caller (livekit rtc SDK) that speaks real audio. Only the model
providers are the local emulators, following ``tests/scenarios/e2e_web.yaml``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from convoi.devstack.caller import CallerReport, CallerScript
from convoi.devstack.harness import (
    EmulatorsProcess,
    ReceiverProcess,
    WorkerProcess,
    dispatch_call,
    place_call,
)
from convoi.devstack.livekit_server import LiveKitServer
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"
UTTERANCES = ["Hi, I have a question about my bill.", "Thanks, that's all."]
GREETING = "Hi Dana, thanks for calling Convoi support. How can I help you today?"


async def place_web_call(
    server: LiveKitServer,
    worker: WorkerProcess,
    spec: dict[str, Any],
    utterances: list[str],
) -> tuple[None, CallerReport]:
    """Dispatch ``spec`` into a new room, join as the caller and run the script."""
    report = await place_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(utterances=utterances, max_wait_s=90),
        name=spec.get("participant_name"),
        room_prefix="e2e",
    )
    return None, report


def web_spec(**fields: Any) -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        **fields,
    }


async def test_web_call_greets_and_answers_two_turns(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> None:
    emulators.load_scenario(SCENARIO)
    spec = web_spec(participant_name="Dana")
    _, report = await place_web_call(livekit_server, worker, spec, UTTERANCES)
    report.save_wav(artifacts_dir / "web_call_agent.wav")

    assert report.ok, report.errors
    assert report.first_agent_audio is not None and report.segments[0].rms > 300  # greeting heard
    assert len(report.turns) == 2 and all(t.first_reply_audio is not None for t in report.turns)

    ended = worker.wait_for_record("call ended", call_id=spec["call_id"])
    assert ended["reason"] == "customer_hangup"
    assert "transcript" not in ended  # customer speech stays out of the operational log
    report_ended = await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended")
    said = [(m["role"], m["text"]) for m in report_ended["event"]["transcript"]]
    assert said == [
        ("assistant", GREETING),
        ("user", UTTERANCES[0]),
        ("assistant", "Sure. Your balance is forty two dollars, due on the first."),
        ("user", UTTERANCES[1]),
        ("assistant", "You're welcome. Have a great day!"),
    ]
    tts_texts = [r.get("text") for r in emulators.requests("tts")]
    assert tts_texts and GREETING in str(tts_texts[0])


async def test_overrides_reach_the_providers(
    livekit_server: LiveKitServer, worker: WorkerProcess, emulators: EmulatorsProcess
) -> None:
    emulators.load_scenario(SCENARIO)
    spec = web_spec(
        participant_name="Omar",
        agent_overrides={
            "first_message": "Hello {name}, this is the override speaking.",
            "system_prompt": "You are a concise support agent for <name>.",
            "llm": {"model": "gpt-4.1-mini", "temperature": 0.7},
            "tts": {"voice_id": "voiceOverride1234567"},
        },
    )
    _, report = await place_web_call(livekit_server, worker, spec, UTTERANCES[:1])
    assert report.ok, report.errors
    worker.wait_for_record("call ended", call_id=spec["call_id"])

    tts = emulators.requests("tts")
    assert tts[0]["text"] == "Hello Omar, this is the override speaking."  # first thing synthesised
    assert {r["voice_id"] for r in tts} == {"voiceOverride1234567"}
    llm = emulators.requests("llm")
    assert llm, "the LLM emulator received no request"
    assert {(r["model"], r["temperature"]) for r in llm} == {("gpt-4.1-mini", 0.7)}
    assert llm[0]["messages"][0] == {
        "role": "system",
        "content": "You are a concise support agent for Omar.",
    }


async def test_bad_callspec_is_rejected_and_the_worker_serves_the_next_call(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(SCENARIO)
    bad = web_spec(agent_id="sqd_3fa85f6457174562b3fc2c963f66afa6")  # workforce on a web call
    room = f"e2e-bad-{uuid.uuid4().hex[:8]}"
    await dispatch_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=bad,
    )
    rejected = worker.wait_for_record("call rejected", call_id=bad["call_id"])
    assert (rejected["status"], rejected["reason"], rejected["field"]) == (
        "failed",
        "invalid_request",
        "agent_id",
    )
    assert "web calls are single-agent" in rejected["problem"]

    not_json = f"e2e-bad-{uuid.uuid4().hex[:8]}"
    await dispatch_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        room=not_json,
        metadata="{not json",
    )
    rejected = worker.wait_for_record("call rejected", room=not_json)
    assert rejected["field"] == "job.metadata"

    good = web_spec(participant_name="Lee")
    _, report = await place_web_call(livekit_server, worker, good, UTTERANCES[:1])
    assert report.ok, report.errors
    assert worker.running()
    worker.wait_for_record("call ended", call_id=good["call_id"])
    ended = await asyncio.to_thread(receiver.wait_for_event, good["call_id"], "call.ended")
    assert ended["event"]["transcript"][0]["text"].startswith("Hi Lee,")
