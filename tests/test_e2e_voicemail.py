"""Voicemail detection end to end over the real SIP bridge (SIPp as the phone, convoi-api).

The agents here are the shipped sales agent with ``voicemail`` added, in a copy of
``agents_config/`` (the shipped one stays without it, so the other SIP tests greet as before):
``leave_message`` on the sales agent itself, ``hang_up`` on a copy of it. SIPp plays what
answers — a voicemail announcement or a person's "Hello?" — as espeak-ng speech; the STT
emulator hears it; livekit-agents' AMD asks the LLM emulator to classify it. The tests read what
the callee heard (its RTP recording), the public GET and the stored ``call.ended``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.devstack.audio import synthesize
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour, Recording
from convoi.devstack.sipp.rtp import RATE
from tests.helpers import AGENTS_CONFIG, SALES
from tests.sip_calls import SipApi, callee, phone_call, start_sip_api, wait_for_speech_after

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-voicemail"
SALES_HANG_UP = "agt_5a1e5a1e5a1e4b0c8d9e0f1a2b3c4d5e"
"""The sales agent, copied with ``voicemail: {action: hang_up}``."""
GREETING = (
    "Hi Ahmed, this is Maya from Convoi. Do you have a minute to talk about your phone support?"
)
MESSAGE_TEMPLATE = (
    "Hi <contact_name>, this is Maya from Convoi. Sorry I missed you. "
    "I will call again tomorrow. Goodbye!"
)
MESSAGE = MESSAGE_TEMPLATE.replace("<contact_name>", "Ahmed")
ANNOUNCEMENT = "Hi, you've reached Ahmed. Please leave a message after the tone."
ANNOUNCEMENT_DELAY_S = 0.5
HELLO = "Hello?"
AMD_PROMPT_WORDS = "Classify the call greeting"
"""A phrase of livekit-agents' AMD_PROMPT (the system message of its request)."""
CLASSIFY_AS_VOICEMAIL = {
    "when": {"system_contains": AMD_PROMPT_WORDS},
    "tool_call": {"name": "save_prediction", "arguments": {"label": "machine-vm"}},
}


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """agents_config/ with voicemail on the sales agent (leave_message) and a hang_up copy."""
    config = tmp_path_factory.mktemp("vm-config") / "agents_config"
    shutil.copytree(AGENTS_CONFIG, config)
    sales_file = config / "agents" / "sales.yaml"
    sales = yaml.safe_load(sales_file.read_text())
    sales["voicemail"] = {"action": "leave_message", "message": MESSAGE_TEMPLATE}
    sales_file.write_text(yaml.safe_dump(sales))
    hang_up = {
        **sales,
        "id": SALES_HANG_UP,
        "name": "Outbound sales (hangs up on machines)",
        "voicemail": {"action": "hang_up"},
    }
    (config / "agents" / "sales_hang_up.yaml").write_text(yaml.safe_dump(hang_up))
    return config


@pytest.fixture(scope="module")
def sip_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    config_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipApi]:
    with start_sip_api(
        sip_stack,
        emulators,
        receiver,
        tmp_path_factory.mktemp("vm-api"),
        artifacts_dir / "worker-voicemail.log",
        agent_name=AGENT_NAME,
        config_dir=config_dir,
    ) as sip:
        yield sip


def spoken_seconds(text: str) -> float:
    """How long SIPp's espeak-ng rendering of ``text`` lasts."""
    return len(synthesize(text, RATE)) / RATE


def speech_after(heard: Recording, at: float) -> list[tuple[float, float]]:
    """(start, end) epoch times of the speech the callee heard, for segments starting after
    ``at``."""
    started = heard.started_at
    assert started is not None
    return [
        (started + s.start_s, started + s.end_s)
        for s in heard.segments()
        if started + s.start_s > at
    ]


def amd_requests(emulators: EmulatorsProcess) -> list[dict[str, Any]]:
    return [
        r
        for r in emulators.requests("llm")
        if AMD_PROMPT_WORDS in str(r["messages"][0].get("content"))
    ]


async def test_a_voicemail_gets_the_whole_message_after_its_announcement(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(
        {"caller": [ANNOUNCEMENT], "llm": [CLASSIFY_AS_VOICEMAIL], "default_reply": "Sure."}
    )
    behaviour = Behaviour.answer_talk(ANNOUNCEMENT, delay_s=ANNOUNCEMENT_DELAY_S)
    with callee(behaviour, tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        answered = phone.wait_for_answer(60)
        assert await asyncio.to_thread(phone.wait_for_hangup, 120) == "caller"  # our BYE
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
        bye = next(m for m in phone.messages() if not m.sent and m.method == "BYE")
        heard = phone.recording()
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "voicemail")
    announced_until = answered.at + ANNOUNCEMENT_DELAY_S + spoken_seconds(ANNOUNCEMENT)
    # everything the callee heard came after its announcement: the message, not the greeting
    speech = speech_after(heard, answered.at)
    assert speech, phone.summary()
    assert speech[0][0] > announced_until - 0.3, (speech, announced_until)
    heard_s = sum(end - start for start, end in speech)
    assert heard_s > 0.6 * spoken_seconds(MESSAGE), (heard_s, phone.summary())
    # ... and the whole message was over before our BYE
    assert bye.at - speech[-1][1] > 0.2, "the BYE cut the message short"

    ended = sip_api.ended_event(call["id"])
    said = [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]
    assert said == [MESSAGE]  # no greeting, no reply to the announcement
    report = ended["voicemail"]
    assert (report["verdict"], report["reason"], report["action"]) == (
        "machine-vm",
        "llm",
        "left_message",
    )
    got = sip_api.get(call["id"])  # the customer reads the same in GET
    assert (got["voicemail"], got["ended_reason"], got["fault"]) == (report, "voicemail", None)
    # the verdict came once the announcement was over, well within max_detection_seconds
    assert announced_until - answered.at - 0.5 < report["detection_seconds"] < 15.0
    # AMD's classification is billed as the agent's LLM use
    requests = amd_requests(emulators)
    assert requests and requests[0]["tool_choice"] == "required"
    assert "leave a message" in str(requests[-1]["messages"][-1]["content"]).lower()
    # what the machine said is in the transcript, never in the worker's log
    assert ("user", ANNOUNCEMENT) in [(t["role"], t["text"]) for t in ended["transcript"]]
    assert "leave a message" not in sip_api.worker.log_path.read_text().lower()
    llm_usage = [u for u in ended["usage"] if u["kind"] == "llm"]
    assert llm_usage and llm_usage[0]["input_tokens"] >= sum(
        r["usage"]["prompt_tokens"] for r in requests
    )


async def test_hang_up_ends_the_call_at_once_without_a_word_to_the_machine(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    # no classifier rule: the LLM emulator's own answer to AMD classifies the announcement
    emulators.load_scenario({"caller": [ANNOUNCEMENT], "default_reply": "Sure."})
    behaviour = Behaviour.answer_talk(ANNOUNCEMENT, delay_s=ANNOUNCEMENT_DELAY_S)
    with callee(behaviour, tmp_path) as phone:
        call = sip_api.create(phone_call(SALES_HANG_UP))
        answered = phone.wait_for_answer(60)
        assert await asyncio.to_thread(phone.wait_for_hangup, 60) == "caller"  # our BYE
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
        bye = next(m for m in phone.messages() if not m.sent and m.method == "BYE")
        heard = phone.recording()
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "voicemail")
    assert speech_after(heard, answered.at) == [], phone.summary()  # not a word
    ended = sip_api.ended_event(call["id"])
    assert [t for t in ended["transcript"] if t["role"] == "assistant"] == []
    report = ended["voicemail"]
    assert (report["verdict"], report["action"]) == ("machine-vm", "hung_up")
    # the hang-up followed the verdict: the BYE came within a few seconds of it
    assert bye.at - answered.at < report["detection_seconds"] + 5.0
    assert final["duration_seconds"] < report["detection_seconds"] + 5.0


async def test_a_person_saying_hello_hears_the_greeting_right_after_the_verdict(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario({"caller": [HELLO], "default_reply": "Great, thanks."})
    with callee(Behaviour.answer_talk(HELLO, delay_s=ANNOUNCEMENT_DELAY_S), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        answered = phone.wait_for_answer(60)
        hello_until = answered.at + ANNOUNCEMENT_DELAY_S + spoken_seconds(HELLO)
        heard = await asyncio.to_thread(wait_for_speech_after, phone, hello_until, 60, 1.5)
        await sip_api.hang_up_as_the_callee(call["room_id"])
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = sip_api.ended_event(call["id"])
    report = ended["voicemail"]
    assert (report["verdict"], report["action"]) == ("human", "greeted")
    speech = speech_after(heard, answered.at)
    assert speech, phone.summary()
    first_audio = speech[0][0]
    hold = first_audio - answered.at
    print(
        f"greeting hold (answer -> greeting audio at SIPp): {hold:.2f} s; "
        f"detection {report['detection_seconds']:.2f} s ({report['reason']})"
    )
    # the greeting came after "Hello?" ended and soon after the verdict (pre-rendered audio)
    assert first_audio > hello_until - 0.3
    assert hold < report["detection_seconds"] + 3.0
    assert sum(end - start for start, end in speech) > 0.6 * spoken_seconds(GREETING)
    said = [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]
    assert said == [GREETING]  # the greeting answered "Hello?"; no extra LLM reply
    assert ("user", HELLO) in [(t["role"], t["text"]) for t in ended["transcript"]]
    conversation = [r for r in emulators.requests("llm") if r not in amd_requests(emulators)]
    assert conversation == []
