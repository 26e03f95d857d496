"""End to end over the real SIP bridge: the phone is SIPp, the call goes through convoi-api.

Every piece is real except the model providers: convoi-api creates the room and dispatches the
worker, the worker dials with ``CreateSIPParticipant`` through livekit-server (with Redis) and
livekit-sip to SIPp on 127.0.0.1:5080 (where ``agents_config/phone_numbers.yaml`` points both
trunks), SIPp answers (or refuses) the way each test scripts it, speaks espeak-ng speech as PCMA
RTP and records the RTP it receives, which the test decodes. The outcome is read where a customer
reads it: ``GET /api/v1/public/calls/{id}``; the stored ``call.ended`` event gives the details
the public GET does not carry (fault, detail, handoffs, transcript).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from livekit import api

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, dispatch_call
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour
from convoi.pipeline import resolve_voice
from tests.conftest import worker_env
from tests.helpers import AGENTS_CONFIG, SALES, SQUAD, UAE_LINE
from tests.sip_calls import (
    CUSTOMER,
    SipApi,
    callee,
    phone_call,
    start_sip_api,
    stt_finals,
    wait_for_speech_after,
)

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-sip"
SALES_GREETING = (
    "Hi Ahmed, this is Maya from Convoi. Do you have a minute to talk about your phone support?"
)
TRIAGE_GREETING = "Hi Ahmed, this is Convoi. Are you calling about billing, or do you need support?"
BILLING_GREETING = "Thanks Ahmed, I'm the billing specialist. What's the question about your bill?"
CALLER_LINE = "Hi, I have a question about my bill."
REPLY = "Sure. Your balance is forty two dollars, due on the first."
GOODBYE = "Thanks for your time, goodbye!"
SQUAD_SCENARIO = Path(__file__).parent / "scenarios" / "e2e_squad.yaml"


@pytest.fixture(scope="module")
def sip_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipApi]:
    with start_sip_api(
        sip_stack,
        emulators,
        receiver,
        tmp_path_factory.mktemp("sip-api"),
        artifacts_dir / "worker-sip.log",
        agent_name=AGENT_NAME,
    ) as sip:
        yield sip


async def test_outbound_call_over_sip_greets_hears_the_callee_and_replies(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario({"caller": [CALLER_LINE], "default_reply": REPLY})
    with callee(Behaviour.answer_talk(CALLER_LINE, delay_s=8.0), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        invite = phone.wait_for_call(60)
        answered = phone.wait_for_answer(30)
        assert CUSTOMER.lstrip("+") in invite.first_line  # INVITE sip:<customer>@…
        spoke_at = answered.at + 8.0  # the callee starts its line 8 s after the answer
        heard = await asyncio.to_thread(wait_for_speech_after, phone, spoke_at)  # the reply
        await sip_api.hang_up_as_the_callee(call["room_id"], "phone-" + CUSTOMER.lstrip("+"))
        assert await asyncio.to_thread(phone.wait_for_hangup, 30) == "caller"
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "callee-heard.wav")

    started = heard.started_at
    assert started is not None
    before = [seg for seg in heard.segments() if started + seg.start_s < spoke_at]
    after = [seg for seg in heard.segments() if started + seg.start_s > spoke_at]
    # the pre-synthesised greeting reached the phone as speech right after the answer ...
    first_audio_at = heard.first_audio_at()
    assert first_audio_at is not None and first_audio_at - answered.at < 5.0
    assert sum(seg.duration_s for seg in before) > 2.0 and max(seg.rms for seg in before) > 300
    # ... the callee's line was transcribed, and the reply came back as RTP after it
    assert stt_finals(emulators) == [CALLER_LINE]
    assert after and sum(seg.duration_s for seg in after) > 1.5
    tts = emulators.requests("tts")
    assert (tts[0]["kind"], tts[0]["text"]) == ("http", SALES_GREETING)  # rendered while ringing

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    assert final["duration_seconds"] > 0 and final["cost"]["amount"] > 0
    ended = sip_api.ended_event(call["id"])
    assert ended["cost"]["by_component"]["telephony"] != "0"  # phone minutes are billed
    assert [(t["role"], t["text"]) for t in ended["transcript"]][:3] == [
        ("assistant", SALES_GREETING),
        ("user", CALLER_LINE),
        ("assistant", REPLY),
    ]


async def test_workforce_call_over_sip_hands_off_to_billing_in_its_own_voice(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(SQUAD_SCENARIO)
    with callee(Behaviour.answer_talk(CALLER_LINE, delay_s=8.0), tmp_path) as phone:
        call = sip_api.create(phone_call(SQUAD, UAE_LINE))
        phone.wait_for_answer(60)
        transferred = await asyncio.to_thread(
            sip_api.worker.wait_for_record, "caller transferred", call_id=call["id"]
        )
        at = datetime.fromisoformat(transferred["timestamp"]).timestamp()
        heard = await asyncio.to_thread(wait_for_speech_after, phone, at)  # billing's greeting
        await sip_api.hang_up_as_the_callee(call["room_id"], "phone-" + CUSTOMER.lstrip("+"))
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = sip_api.ended_event(call["id"])
    assert [(h["from_member"], h["to_member"]) for h in ended["handoffs"]] == [
        ("triage", "billing")
    ]
    said = [(t["member"], t["text"]) for t in ended["transcript"] if t["role"] == "assistant"]
    assert said[:2] == [("triage", TRIAGE_GREETING), ("billing", BILLING_GREETING)]
    # what the callee heard next was billing's greeting, synthesised in billing's voice
    voice_of = {r["text"]: r["voice_id"] for r in emulators.requests("tts")}
    assert voice_of[TRIAGE_GREETING] == resolve_voice("josh")
    assert voice_of[BILLING_GREETING] == resolve_voice("adam")
    started = heard.started_at
    assert started is not None
    after = [seg for seg in heard.segments() if started + seg.start_s > at]
    assert after and after[0].duration_s > 2.0  # the billing greeting, heard after the handoff


@pytest.mark.parametrize(
    ("behaviour", "status", "reason", "sip_code"),
    [
        (Behaviour.busy(), "busy", "dial_busy", "486"),
        (Behaviour.reject(), "failed", "dial_failed", "603"),
        (Behaviour.not_found(), "failed", "dial_failed", "404"),
    ],
    ids=["busy", "rejected", "not_found"],
)
async def test_a_refused_call_ends_with_the_sip_status_in_its_detail(
    sip_api: SipApi,
    tmp_path: Path,
    behaviour: Behaviour,
    status: str,
    reason: str,
    sip_code: str,
) -> None:
    with callee(behaviour, tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        phone.wait_for_call(60)
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    assert (final["status"], final["ended_reason"]) == (status, reason)
    assert final["duration_seconds"] == 0 and final["cost"]["amount"] == 0
    ended = sip_api.ended_event(call["id"])
    assert sip_code in ended["detail"], ended["detail"]


async def test_nobody_answers_ends_no_answer_after_the_ringing_timeout(
    sip_api: SipApi, tmp_path: Path
) -> None:
    with callee(Behaviour.ring_no_answer(), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))  # sales: ringing_timeout_seconds 25
        phone.wait_for_call(60)
        phone.wait_for_cancel(90)  # the bridge gave up ringing: CANCEL
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    assert (final["status"], final["ended_reason"]) == ("no_answer", "dial_no_answer")
    ended = sip_api.ended_event(call["id"])
    assert ended["fault"] == "customer" and ended["duration_seconds"] == 0


async def test_the_callee_hangs_up(sip_api: SipApi, tmp_path: Path) -> None:
    with callee(Behaviour.answer_then_hangup(after_seconds=6.0), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        phone.wait_for_answer(60)
        assert await asyncio.to_thread(phone.wait_for_hangup, 60) == "callee"  # BYE from SIPp
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    # billed from the answer to the BYE (6 s), not to when the session finished closing
    assert 4.0 < final["duration_seconds"] < 12.0


async def test_a_callee_who_vanishes_is_billed_until_their_media_stopped(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    """A dead phone sends no BYE: its RTP stops, livekit-sip drops the call 15 s later (its media
    timeout), and the call ends customer_hangup at the last packet, not at the drop."""
    emulators.load_scenario({"caller": [CALLER_LINE], "default_reply": REPLY})
    hold_s = 20.0  # the callee's RTP stops 20 s after the answer; it never hangs up
    with callee(Behaviour.answer_talk(CALLER_LINE, delay_s=8.0), tmp_path, hold_s=hold_s) as phone:
        call = sip_api.create(phone_call(SALES))
        phone.wait_for_answer(90)
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"], 120.0)
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    # billed from the answer to the last packet (one stats sample of slack), not 15 s more
    assert hold_s - 3.0 <= final["duration_seconds"] <= hold_s + 4.0, final
    assert stt_finals(emulators) == [CALLER_LINE]  # it was a real conversation until then


async def test_the_agent_hangs_up_after_its_whole_goodbye_was_heard(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(
        {
            "caller": ["No thanks, bye."],
            "llm": [
                {  # as a real model does: the goodbye and the end_call tool in one answer
                    "when": {"last_user_contains": "bye"},
                    "say": GOODBYE,
                    "tool_call": {"name": "end_call", "arguments": {}},
                },
                {"when": {"always": True}, "say": "Is there anything else?"},
            ],
        }
    )
    with callee(Behaviour.answer_talk("No thanks, bye.", delay_s=8.0), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        phone.wait_for_answer(60)
        assert await asyncio.to_thread(phone.wait_for_hangup, 120) == "caller"  # our BYE
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
        bye = next(m for m in phone.messages() if not m.sent and m.method == "BYE")
        heard = phone.recording()
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "agent_hangup")
    ended = sip_api.ended_event(call["id"])
    assert [t["text"] for t in ended["transcript"] if t["role"] == "assistant"][-1] == GOODBYE
    # the goodbye was the last speech the callee heard, and it was over before the BYE came
    segments = heard.segments()
    assert len(segments) >= 2, phone.summary()
    goodbye = segments[-1]
    started = heard.started_at
    assert started is not None
    assert goodbye.duration_s > 1.0
    assert bye.at - (started + goodbye.end_s) > 0.2, "the BYE cut the goodbye short"


async def test_context_policy_none_starts_billing_without_the_history(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path: Path,
) -> None:
    config = tmp_path / "agents_config"
    shutil.copytree(AGENTS_CONFIG, config)
    squad_file = config / "squads" / "customer_care.yaml"
    squad = yaml.safe_load(squad_file.read_text())
    squad["context_policy"] = "none"
    squad_file.write_text(yaml.safe_dump(squad))
    env = {
        **worker_env(sip_stack, emulators, receiver, tmp_path / "outbox.sqlite3"),  # type: ignore[arg-type]
        **sip_stack.worker_env(),
        "CONVOI_CONFIG_DIR": str(config),
        "CONVOI_TRUNK_UAE_PASSWORD": "e2e-trunk-password",
    }
    worker = WorkerProcess(artifacts_dir / "worker-sip-none.log", env, agent_name="convoi-e2e-none")
    worker.start_and_wait()
    second = "How much do I owe?"
    try:
        emulators.load_scenario(SQUAD_SCENARIO)
        spec = {**phone_call(SQUAD, UAE_LINE), "call_id": f"call_{uuid.uuid4().hex[:16]}"}
        room = f"e2e-sip-none-{uuid.uuid4().hex[:8]}"
        behaviour = Behaviour.answer_talk(CALLER_LINE, delay_s=8.0, then=((10.0, second),))
        with callee(behaviour, tmp_path / "sipp") as phone:
            await dispatch_call(
                sip_stack.url,
                sip_stack.api_key,
                sip_stack.api_secret,
                agent_name=worker.agent_name,
                room=room,
                metadata=spec,
            )
            phone.wait_for_answer(60)

            def billing_requests() -> list[dict[str, Any]]:
                return [
                    r
                    for r in emulators.requests("llm")
                    if "billing specialist" in r["messages"][0]["content"]
                ]

            await asyncio.to_thread(
                worker.wait_for, lambda: bool(billing_requests()), 120, "billing's first request"
            )
            identity = "phone-" + CUSTOMER.lstrip("+")
            async with api.LiveKitAPI(
                sip_stack.http_url, sip_stack.api_key, sip_stack.api_secret
            ) as lk:
                await lk.room.remove_participant(
                    api.RoomParticipantIdentity(room=room, identity=identity)
                )
            await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended")
        users = [m["content"] for m in billing_requests()[0]["messages"] if m["role"] == "user"]
        assert CALLER_LINE not in users and users == [second]
    finally:
        worker.stop()
