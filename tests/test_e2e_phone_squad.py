"""End to end: outbound phone calls and workforce (squad) handoffs on a real livekit-server.

livekit-sip cannot be built here (the Go module proxy refuses github.com/livekit/sip), so the SIP
leg is the only stand-in: the worker runs with ``CONVOI_DIAL_MODE=participant`` and the "phone"
is the simulated caller joining the room as ``phone-<digits>``. Everything else is real: the
worker subprocess, its dialing/ringing/answer lifecycle, the squad runtime, the real plugins
against the emulators, and the reports at the receiver.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.devstack.caller import CallerReport, CallerScript
from convoi.devstack.harness import (
    EmulatorsProcess,
    ReceiverProcess,
    WorkerProcess,
    dispatch_call,
    place_call,
)
from convoi.devstack.livekit_server import LiveKitServer
from convoi.pipeline import resolve_voice
from tests.conftest import worker_env
from tests.helpers import SALES, SQUAD
from tests.helpers import US_LINE as PHONE

pytestmark = pytest.mark.e2e

SQUAD_SCENARIO = Path(__file__).parent / "scenarios" / "e2e_squad.yaml"
NUMBER = "+15550000002"
TRIAGE_GREETING = "Hi Ahmed, this is Convoi. Are you calling about billing, or do you need support?"
BILLING_GREETING = "Thanks Ahmed, I'm the billing specialist. What's the question about your bill?"
FIRST_TURN = "Hi, I have a question about my bill."


def phone_spec(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "outbound_phone",
        "agent_id": agent_id,
        "customer": {"number": NUMBER, "name": "Ahmed"},
        "phone_number_id": PHONE,
        "metadata": {"campaign": "e2e-phone"},
        **fields,
    }


async def answer_call(
    server: LiveKitServer, worker: WorkerProcess, spec: dict[str, Any], script: CallerScript
) -> CallerReport:
    """Dispatch the phone call and answer it as the phone (the caller joins as phone-<digits>)."""
    return await place_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=script,
        identity="phone-" + NUMBER.lstrip("+"),
        room_prefix="e2e-phone",
    )


async def ended_event(receiver: ReceiverProcess, call_id: str) -> dict[str, Any]:
    return (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended"))["event"]


def statuses(receiver: ReceiverProcess, call_id: str) -> list[str]:
    return [e["status"] for e in receiver.events(call_id) if e["type"] == "call.status"]


async def test_workforce_call_hands_off_to_billing_with_its_voice_and_the_history(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(SQUAD_SCENARIO)
    spec = phone_spec(SQUAD)  # sqd_ in agent_id: a workforce, exactly like an agent id
    report = await answer_call(
        livekit_server,
        worker,
        spec,
        CallerScript(utterances=[FIRST_TURN, "How much do I owe?"], max_wait_s=90),
    )
    assert report.ok, report.errors
    ended = await ended_event(receiver, spec["call_id"])

    # the caller heard triage, then the billing member (its greeting right after the transfer)
    heard = [t.text for t in report.final_transcripts if t.participant_identity != report.identity]
    assert heard[:3] == [
        TRIAGE_GREETING,
        BILLING_GREETING,
        "You owe forty two dollars, due on the first.",
    ]

    # ... synthesised with each member's own voice
    voice_of = {r["text"]: r["voice_id"] for r in emulators.requests("tts")}
    assert voice_of[TRIAGE_GREETING] == resolve_voice("josh")
    assert voice_of[BILLING_GREETING] == resolve_voice("adam")

    # billing's first LLM request carries the caller's earlier turn (context policy: all)
    billing_requests = [
        r for r in emulators.requests("llm") if "billing specialist" in r["messages"][0]["content"]
    ]
    assert any(
        m["role"] == "user" and m["content"] == FIRST_TURN for m in billing_requests[0]["messages"]
    )
    triage_requests = [
        r for r in emulators.requests("llm") if "customer-care team" in r["messages"][0]["content"]
    ]
    assert len(triage_requests) == 1  # the old member made no extra reply after the transfer
    assert set(triage_requests[0]["tools"]) == {
        "transfer_to_billing",
        "transfer_to_support",
        "end_call",
    }

    # the report: phone lifecycle, the handoff, cost split per member
    assert statuses(receiver, spec["call_id"]) == ["initiated", "ringing", "active", "completed"]
    assert [(h["from_member"], h["to_member"], h["reason"]) for h in ended["handoffs"]] == [
        ("triage", "billing", "question about a bill")
    ]
    assert set(ended["cost"]["by_member"]) == {"triage", "billing"}
    assert {t["member"] for t in ended["transcript"] if t["role"] == "assistant"} == {
        "triage",
        "billing",
    }
    assert ended["ended_reason"] == "customer_hangup"


async def test_context_policy_none_starts_billing_without_the_history(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    config = tmp_path / "agents_config"
    shutil.copytree("agents_config", config)
    squad_file = config / "squads" / "customer_care.yaml"
    squad = yaml.safe_load(squad_file.read_text())
    squad["context_policy"] = "none"
    squad_file.write_text(yaml.safe_dump(squad))
    env = {
        **worker_env(livekit_server, emulators, receiver, tmp_path / "outbox.sqlite3"),
        "CONVOI_CONFIG_DIR": str(config),
    }
    worker = WorkerProcess(
        artifacts_dir / "worker-policy-none.log", env, agent_name="convoi-e2e-none"
    )
    worker.start_and_wait()
    try:
        emulators.load_scenario(SQUAD_SCENARIO)
        spec = phone_spec(SQUAD)
        report = await answer_call(
            livekit_server,
            worker,
            spec,
            CallerScript(utterances=[FIRST_TURN, "How much do I owe?"], max_wait_s=90),
        )
        assert report.ok, report.errors
        await ended_event(receiver, spec["call_id"])
        billing_requests = [
            r
            for r in emulators.requests("llm")
            if "billing specialist" in r["messages"][0]["content"]
        ]
        users = [m["content"] for m in billing_requests[0]["messages"] if m["role"] == "user"]
        assert FIRST_TURN not in users and users == ["How much do I owe?"]
    finally:
        worker.stop()


async def test_phone_call_nobody_answers_ends_no_answer(
    livekit_server: LiveKitServer, worker: WorkerProcess, receiver: ReceiverProcess, tmp_path: Path
) -> None:
    spec = phone_spec(SALES)  # sales agent: ringing_timeout_seconds 25; nobody joins
    room = f"e2e-noanswer-{uuid.uuid4().hex[:8]}"
    await dispatch_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=spec,
    )
    ended = await ended_event(receiver, spec["call_id"])
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "no_answer",
        "dial_no_answer",
        "customer",
    )
    assert ended["duration_seconds"] == 0
    assert statuses(receiver, spec["call_id"]) == ["initiated", "ringing", "no_answer"]


async def test_agent_ends_the_phone_call_as_agent_hangup(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(
        {
            "caller": ["No thanks, bye."],
            "llm": [
                {
                    "when": {"last_user_contains": "bye"},
                    "tool_call": {"name": "end_call", "arguments": {}},
                },
                {"when": {"always": True}, "say": "Thanks for your time, goodbye!"},
            ],
        }
    )
    spec = phone_spec(SALES)
    report = await answer_call(
        livekit_server,
        worker,
        spec,
        CallerScript(utterances=["No thanks, bye."], hang_up_after=False, max_wait_s=60),
    )
    ended = await ended_event(receiver, spec["call_id"])
    assert (ended["status"], ended["ended_reason"]) == ("completed", "agent_hangup")
    # the phone did not hang up: the agent ended the call and the room went away under it
    assert any("the agent left" in e for e in report.errors)
    assert ended["transcript"][0]["text"].startswith("Hi Ahmed, this is Maya from Convoi.")


async def test_greeting_is_rendered_while_ringing_and_played_on_answer(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> None:
    emulators.load_scenario({"caller": ["Sure, go ahead."], "default_reply": "Great, thank you."})
    spec = phone_spec(SALES)
    report = await answer_call(
        livekit_server, worker, spec, CallerScript(utterances=["Sure, go ahead."], max_wait_s=90)
    )
    assert report.ok, report.errors
    ended = await ended_event(receiver, spec["call_id"])
    greeting = (
        "Hi Ahmed, this is Maya from Convoi. Do you have a minute to talk about your phone support?"
    )
    tts = emulators.requests("tts")
    # rendered through the one-shot HTTP synthesis before the answer, not streamed after it
    assert (tts[0]["kind"], tts[0]["text"]) == ("http", greeting)
    assert ended["transcript"][0] == {
        **ended["transcript"][0],
        "role": "assistant",
        "text": greeting,
    }
    tts_usage = next(u for u in ended["usage"] if u["kind"] == "tts")
    assert tts_usage["characters"] >= len(greeting)  # the pre-rendered greeting is billed too
    answer_to_audio = (report.first_agent_audio.mono - report.joined.mono) * 1000
    (artifacts_dir / "phone-answer-to-first-audio-ms.txt").write_text(f"{answer_to_audio:.0f}\n")
