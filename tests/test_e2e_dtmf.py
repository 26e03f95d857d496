"""End to end over the real SIP bridge: keys pressed on the phone, both ways.

The phone is SIPp (``tests/sip_calls.py``): it presses keys as RFC 4733 telephone-events in its
RTP (``Behaviour.answer_talk(keys=...)``), which livekit-sip turns into SIP DTMF packets in the
room; the worker gives the caller's keys to the LLM as one turn. The other way, the agent's
``send_dtmf`` tool publishes DTMF in the room and livekit-sip plays it to SIPp as
telephone-events, which the test reads from what SIPp received (``Recording.keys``).

The worker runs the shipped definitions with ``send_dtmf`` added to the sales agent's tools (the
control plane, which only validates the call, keeps the shipped ones).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour, Recording, SippCallee, TelephoneEvent
from tests.helpers import AGENTS_CONFIG, SALES
from tests.sip_calls import SipApi, callee, phone_call, start_sip_api, wait_for_speech_after

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-dtmf"
SALES_GREETING = (
    "Hi Ahmed, this is Maya from Convoi. Do you have a minute to talk about your phone support?"
)
PRESSED_123 = "The caller pressed the keys 1 2 3 # on their phone's keypad."
REPLY_123 = "Thanks, I have your account number, one two three."


@pytest.fixture(scope="module")
def sip_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipApi]:
    work = tmp_path_factory.mktemp("sip-api-dtmf")
    config = work / "agents_config"
    shutil.copytree(AGENTS_CONFIG, config)
    sales_file = config / "agents" / "sales.yaml"
    sales = yaml.safe_load(sales_file.read_text())
    sales["tools"] = ["end_call", "send_dtmf"]
    sales_file.write_text(yaml.safe_dump(sales))
    with start_sip_api(
        sip_stack,
        emulators,
        receiver,
        work,
        artifacts_dir / "worker-sip-dtmf.log",
        agent_name=AGENT_NAME,
        config_dir=config,
    ) as sip:
        yield sip


def user_messages(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "user"]


def wait_for_keys(phone: SippCallee, count: int, timeout: float = 60.0) -> Recording:
    """Wait until the callee has received ``count`` whole keys (telephone-events up to their
    end packets), or more keys than that."""

    def done(events: list[TelephoneEvent]) -> bool:
        return len(events) > count or (len(events) == count and all(e.ended for e in events))

    deadline = time.monotonic() + timeout
    while not done((heard := phone.recording()).key_events()):
        assert time.monotonic() < deadline, f"keys received: {heard.keys!r}\n{phone.summary()}"
        time.sleep(0.25)  # the capture file grows as RTP arrives; nothing to wait on but it
    return heard


async def test_keys_the_callee_presses_reach_the_llm_as_one_turn_and_the_reply_is_heard(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(
        {
            "caller": [],
            "llm": [{"when": {"last_user_contains": "pressed the keys 1 2 3 #"}, "say": REPLY_123}],
            "default_reply": "Sorry, I did not get that.",
        }
    )
    press_at = 12.0  # after the greeting (about 6 s)
    with callee(Behaviour.answer_talk("", keys=((press_at, "123#"),)), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        answered = phone.wait_for_answer(60)
        pressed_at = answered.at + press_at
        heard = await asyncio.to_thread(wait_for_speech_after, phone, pressed_at)  # the reply
        await sip_api.hang_up_as_the_callee(call["room_id"])
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "callee-heard.wav")

    # the LLM got the four keys as one caller turn, its last user input
    [request] = [r for r in emulators.requests("llm") if user_messages(r)]
    assert user_messages(request) == [PRESSED_123]
    # the scripted answer to it was spoken: the callee heard speech after pressing the keys
    started = heard.started_at
    assert started is not None
    after = [seg for seg in heard.segments() if started + seg.start_s > pressed_at]
    assert after and sum(seg.duration_s for seg in after) > 1.5, phone.summary()
    assert REPLY_123 in [t["text"] for t in emulators.requests("tts")]

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = sip_api.ended_event(call["id"])
    assert [(t["role"], t["text"], t["source"]) for t in ended["transcript"]] == [
        ("assistant", SALES_GREETING, "voice"),
        ("user", "123#", "dtmf"),
        ("assistant", REPLY_123, "voice"),
    ]


async def test_the_agents_send_dtmf_reaches_the_phone_as_telephone_events_in_order(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    menu = "For billing press four, then two."
    emulators.load_scenario(
        {
            "caller": [menu],
            "llm": [
                {
                    "when": {"last_user_contains": "press four"},
                    "tool_call": {"name": "send_dtmf", "arguments": {"digits": "42"}},
                }
            ],
            "default_reply": "Okay.",
        }
    )
    with callee(Behaviour.answer_talk(menu, delay_s=8.0), tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        phone.wait_for_answer(60)
        await asyncio.to_thread(
            sip_api.worker.wait_for_record, "agent pressed keys", call_id=call["id"]
        )
        heard = await asyncio.to_thread(wait_for_keys, phone, 2)
        await sip_api.hang_up_as_the_callee(call["room_id"])
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])

    assert heard.keys == "42"
    four, two = heard.key_events()
    assert four.ended and two.ended  # each key was released (end packets received)
    assert two.arrival - four.arrival > 0.2  # two separate presses, four first
    assert four.duration > 0 and two.duration > 0
    [request] = [r for r in emulators.requests("llm") if user_messages(r)]
    assert user_messages(request) == [menu]  # the menu was heard, the keys answered it
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")


async def test_pressing_keys_is_caller_activity_for_the_silence_limit(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    """A caller typing a long number slowly (a key every 1.5 s for 15 s) is not silent: with a
    5 s silence limit the agent neither prompts nor hangs up while they type."""
    emulators.load_scenario(
        {"caller": [], "llm": [{"when": {"always": True}, "say": "Thank you."}]}
    )
    keys = (*((5.0 + 1.5 * i, "1") for i in range(10)), (20.0, "#"))
    body = {**phone_call(SALES), "agent_overrides": {"limits": {"silence_timeout_seconds": 5}}}
    with callee(Behaviour.answer_talk("", keys=keys), tmp_path) as phone:
        call = sip_api.create(body)
        phone.wait_for_answer(60)
        # after the keys, the caller stays silent: prompt, goodbye, the agent hangs up
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])

    assert (final["status"], final["ended_reason"]) == ("completed", "silence_timeout")
    ended = sip_api.ended_event(call["id"])
    said = [(t["role"], t["text"]) for t in ended["transcript"]]
    assert said[:3] == [
        ("assistant", SALES_GREETING),
        ("user", "1111111111#"),  # one input: no pause of 2 s, no prompt in between
        ("assistant", "Thank you."),
    ]
    assert len(said) == 5  # then the silence prompt and the goodbye
