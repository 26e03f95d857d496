"""End to end on a real livekit-server: the worker conducts web calls.

Real pieces: livekit-server (pinned build), ``convoi-worker start`` as a subprocess with the real
livekit plugins, and a simulated caller (livekit rtc SDK) that speaks real audio. Only the model
providers are the local emulators, following ``tests/scenarios/e2e_web.yaml``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from convoi.devstack.caller import CallerReport, CallerScript, caller_token, run_caller
from convoi.devstack.harness import EmulatorsProcess, WorkerProcess, dispatch_call
from convoi.devstack.livekit_server import LiveKitServer

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"
SUPPORT = "agt_b88d642dd68747f28305c428b209xxxx"
UTTERANCES = ["Hi, I have a question about my bill.", "Thanks, that's all."]
GREETING = "Hi Dana, thanks for calling Convoi support. How can I help you today?"


async def place_web_call(
    server: LiveKitServer,
    worker: WorkerProcess,
    spec: dict[str, Any],
    utterances: list[str],
) -> tuple[str, CallerReport]:
    """Dispatch ``spec`` into a new room, join as the caller and run the script."""
    room = f"e2e-{uuid.uuid4().hex[:8]}"
    await dispatch_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=spec,
    )
    token = caller_token(
        server.api_key, server.api_secret, room, "caller", name=spec.get("participant_name")
    )
    report = await run_caller(server.url, token, CallerScript(utterances=utterances, max_wait_s=90))
    return room, report


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
    artifacts_dir: Path,
) -> None:
    emulators.load_scenario(SCENARIO)
    spec = web_spec(participant_name="Dana")
    room, report = await place_web_call(livekit_server, worker, spec, UTTERANCES)
    report.save_wav(artifacts_dir / "web_call_agent.wav")

    assert report.ok, report.errors
    assert report.first_agent_audio is not None and report.segments[0].rms > 300  # greeting heard
    assert len(report.turns) == 2 and all(t.first_reply_audio is not None for t in report.turns)

    ended = worker.wait_for_record("call ended", call_id=spec["call_id"])
    assert ended["reason"] == "customer_hangup"
    said = [(m["role"], m["text"]) for m in ended["transcript"]]
    assert said == [
        ("assistant", GREETING),
        ("user", UTTERANCES[0]),
        ("assistant", "Sure. Your balance is forty two dollars, due on the first."),
        ("user", UTTERANCES[1]),
        ("assistant", "You're welcome. Have a great day!"),
    ]
    tts_texts = [r.get("text") for r in emulators.requests("tts")]
    assert tts_texts and GREETING in str(tts_texts[0])
