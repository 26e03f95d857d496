"""Transfers to a human, end to end over the real SIP bridge (SIPp phones, livekit-sip).

The sales agent gets two destinations in a test-only copy of ``agents_config/`` (the control plane
seeds its definitions from it and embeds the agent in the dispatch): ``billing_desk`` (cold, E.164: a SIP REFER to ``tel:+1…``) and
``supervisor`` (warm, ``sip:desk@127.0.0.1:5082``: a second SIPp, the human, on its own SIP and
media ports). The scripted LLM calls ``transfer_call`` when the caller asks; the briefing session
(livekit's ``WarmTransferTask``) calls ``connect_to_caller`` when the human speaks.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour, SippCallee
from tests.helpers import AGENTS_CONFIG, SALES
from tests.sip_calls import SipApi, callee, phone_call, start_sip_api, wait_for_speech_after

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-transfer"
DESK = "+15550000100"
HUMAN_PORT, HUMAN_MEDIA_PORT = 5082, 16040
HUMAN_URI = f"sip:desk@127.0.0.1:{HUMAN_PORT}"
COLD_LINE = "Can you put me through to the billing desk?"
WARM_LINE = "I would like to speak to a person please."
HUMAN_LINE = "Hello, this is the supervisor desk."
HANDOVER = "Sure, I am transferring you now."
FAILED_REPLY = "Sorry, I could not connect you. Can I help with anything else?"
BRIEFING = "Hi, I have Ahmed on the line, he asked to speak to a person."
HOLDING = tuple((4.0, "I am still holding.") for _ in range(14))
"""The caller keeps talking (every few seconds), so the human hears them once bridged."""
HUMAN_TALK = ((8.0, "Okay, put them through."), *((4.0, "Hello, can you hear me?"),) * 12)
"""The human's next line (after the briefing) agrees; then they keep talking."""

SCENARIO: dict[str, Any] = {
    "caller": [COLD_LINE],
    "llm": [
        {  # the briefing session (livekit's WarmTransferTask instructions): brief the human ...
            "when": {"system_contains": "reaching out to a human agent"},
            "say": BRIEFING,
            "max_uses": 1,
        },
        {  # ... and connect them when they answer that
            "when": {"system_contains": "reaching out to a human agent"},
            "tool_call": {"name": "connect_to_caller", "arguments": {}},
        },
        {"when": {"has_tool_result": "transfer_call"}, "say": FAILED_REPLY},
        {
            "when": {"last_user_contains": "billing desk"},
            "say": HANDOVER,
            "tool_call": {
                "name": "transfer_call",
                "arguments": {"destination": "billing_desk", "summary": "a billing question"},
            },
        },
        {
            "when": {"last_user_contains": "a person"},
            "say": HANDOVER,
            "tool_call": {
                "name": "transfer_call",
                "arguments": {"destination": "supervisor", "summary": "wants a person"},
            },
        },
    ],
    "default_reply": "Okay.",
}


@pytest.fixture(scope="module")
def transfer_api(
    sip_stack: SipStack,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipApi]:
    config = tmp_path_factory.mktemp("transfer-config") / "agents_config"
    shutil.copytree(AGENTS_CONFIG, config)
    sales_file = config / "agents" / "sales.yaml"
    sales = yaml.safe_load(sales_file.read_text())
    sales["transfers"] = [
        {
            "name": "billing_desk",
            "destination": DESK,
            "description": "The billing desk, for questions about bills.",
            "mode": "cold",
        },
        {
            "name": "supervisor",
            "destination": HUMAN_URI,
            "description": "A person, when the caller asks to speak to a human.",
            "mode": "warm",
        },
    ]
    sales_file.write_text(yaml.safe_dump(sales))
    with start_sip_api(
        sip_stack,
        emulators,
        receiver,
        tmp_path_factory.mktemp("transfer-api"),
        artifacts_dir / "worker-transfer.log",
        agent_name=AGENT_NAME,
        config_dir=config,
    ) as sip:
        yield sip


def refer_to(phone: SippCallee) -> list[str]:
    """The Refer-To headers of the REFERs the phone received (SIPp's full message trace)."""
    log = (phone.workdir / f"{phone.role}.messages.log").read_text(errors="replace")
    refers = [part for part in log.split("\n\n") if part.lstrip().startswith("REFER ")]
    return [m for part in refers for m in re.findall(r"^Refer-To:\s*(\S+)", part, re.M)]


def said(ended: dict[str, Any]) -> list[str]:
    return [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]


async def test_cold_transfer_refers_the_caller_and_ends_transferred(
    transfer_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(SCENARIO)
    with callee(Behaviour.answer_talk(COLD_LINE, delay_s=8.0, refer_status=202), tmp_path) as phone:
        call = transfer_api.create(phone_call(SALES))
        answered = phone.wait_for_answer(60)
        refer = await asyncio.to_thread(
            phone.wait_for_message, lambda m: not m.sent and m.method == "REFER", 120, "REFER"
        )
        assert await asyncio.to_thread(phone.wait_for_hangup, 30) == "caller"  # livekit-sip BYE
        final = await asyncio.to_thread(transfer_api.wait_for_terminal, call["id"])
    heard = phone.recording()
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert refer_to(phone) == [f"tel:{DESK}"]
    assert (final["status"], final["ended_reason"]) == ("completed", "transferred")
    ended = transfer_api.ended_event(call["id"])
    transfer = ended["transfer"]
    assert transfer_api.get(call["id"])["transfer"] == transfer  # GET shows it too
    assert (transfer["destination"], transfer["name"], transfer["mode"]) == (
        DESK,
        "billing_desk",
        "cold",
    )
    assert transfer["succeeded"] is True and transfer["error"] is None
    # the handover sentence was said, and played to the caller before the REFER went out
    assert said(ended)[-1] == HANDOVER
    started = heard.started_at
    assert started is not None
    spoke_at = answered.at + 8.0
    handover = [s for s in heard.segments() if spoke_at < started + s.start_s < refer.at]
    assert handover and sum(s.duration_s for s in handover) > 1.0


async def test_refused_cold_transfer_keeps_the_call_and_the_agent_says_so(
    transfer_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(SCENARIO)
    with callee(Behaviour.answer_talk(COLD_LINE, delay_s=8.0, refer_status=403), tmp_path) as phone:
        call = transfer_api.create(phone_call(SALES))
        phone.wait_for_answer(60)
        refer = await asyncio.to_thread(
            phone.wait_for_message, lambda m: not m.sent and m.method == "REFER", 120, "REFER"
        )
        heard = await asyncio.to_thread(wait_for_speech_after, phone, refer.at)  # the apology
        assert transfer_api.get(call["id"])["status"] == "active"  # still on the line
        await transfer_api.hang_up_as_the_callee(call["room_id"])
        final = await asyncio.to_thread(transfer_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "callee-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = transfer_api.ended_event(call["id"])
    transfer = ended["transfer"]
    assert (transfer["name"], transfer["mode"], transfer["succeeded"]) == (
        "billing_desk",
        "cold",
        False,
    )
    assert "403" in transfer["error"]
    lines = said(ended)
    assert lines[lines.index(HANDOVER) + 1] == FAILED_REPLY  # the apology right after
    llm = emulators.requests("llm")
    results = [m for r in llm for m in r["messages"] if m["role"] == "tool"]
    assert results and "failed" in results[-1]["content"] and "403" in results[-1]["content"]


async def test_warm_transfer_briefs_the_human_then_bridges_the_two_legs(
    transfer_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    # every utterance (the caller's, the human's) is transcribed as WARM_LINE: the briefing
    # session's rules do not depend on what the human says, only that they spoke
    emulators.load_scenario({**SCENARIO, "caller": [WARM_LINE], "caller_repeat": True})
    human = SippCallee(
        Behaviour.answer_talk(HUMAN_LINE, delay_s=2.0, then=HUMAN_TALK),
        workdir=tmp_path / "human",
        sip_port=HUMAN_PORT,
        media_port=HUMAN_MEDIA_PORT,
    )
    caller_plays = Behaviour.answer_talk(WARM_LINE, delay_s=8.0, then=HOLDING)
    with callee(caller_plays, tmp_path / "caller") as phone, human:
        call = transfer_api.create(phone_call(SALES))
        phone.wait_for_answer(60)
        invite = await asyncio.to_thread(human.wait_for_call, 120)
        human_answered = await asyncio.to_thread(human.wait_for_answer, 30)
        record = await asyncio.to_thread(
            transfer_api.worker.wait_for_record, "call transferred", call_id=call["id"]
        )
        bridged_at = datetime.fromisoformat(record["timestamp"]).timestamp()
        final = await asyncio.to_thread(transfer_api.wait_for_terminal, call["id"])
        # both ways: the human hears the caller, the caller hears the human
        human_heard = await asyncio.to_thread(wait_for_speech_after, human, bridged_at + 1.0)
        caller_heard = await asyncio.to_thread(wait_for_speech_after, phone, bridged_at + 1.0)
        await transfer_api.hang_up_as_the_callee(call["room_id"])
        assert await asyncio.to_thread(human.wait_for_hangup, 60) == "caller"  # leg hung up
    human_heard.write_wav(tmp_path / "human-heard.wav")
    caller_heard.write_wav(tmp_path / "caller-heard.wav")

    assert "desk" in invite.first_line  # INVITE sip:desk@127.0.0.1:5082
    assert (final["status"], final["ended_reason"]) == ("completed", "transferred")
    transfer = transfer_api.ended_event(call["id"])["transfer"]
    assert transfer_api.get(call["id"])["transfer"] == transfer  # GET shows it too
    assert (transfer["destination"], transfer["name"], transfer["mode"]) == (
        HUMAN_URI,
        "supervisor",
        "warm",
    )
    assert transfer["succeeded"] is True
    # the human was briefed (the agent spoke to them before the bridge) with the call's history
    started = human_heard.started_at
    assert started is not None
    briefing = [
        s for s in human_heard.segments() if human_answered.at < started + s.start_s < bridged_at
    ]
    assert briefing and sum(s.duration_s for s in briefing) > 1.5
    briefs = [
        r
        for r in emulators.requests("llm")
        if "reaching out to a human agent" in r["messages"][0]["content"]
    ]
    assert briefs and WARM_LINE in briefs[0]["messages"][0]["content"]
    after = [s for s in human_heard.segments() if started + s.start_s > bridged_at + 1.0]
    assert after and sum(s.duration_s for s in after) > 1.0


async def test_warm_transfer_to_a_busy_human_returns_to_the_caller(
    transfer_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario({**SCENARIO, "caller": [WARM_LINE]})
    human = SippCallee(
        Behaviour.busy(), workdir=tmp_path / "human", sip_port=HUMAN_PORT, media_port=16042
    )
    with callee(Behaviour.answer_talk(WARM_LINE, delay_s=8.0), tmp_path / "caller") as phone:
        with human:
            call = transfer_api.create(phone_call(SALES))
            phone.wait_for_answer(60)
            busy = await asyncio.to_thread(human.wait_for_call, 120)
        heard = await asyncio.to_thread(wait_for_speech_after, phone, busy.at + 1.0)
        assert transfer_api.get(call["id"])["status"] == "active"
        await transfer_api.hang_up_as_the_callee(call["room_id"])
        final = await asyncio.to_thread(transfer_api.wait_for_terminal, call["id"])
    heard.write_wav(tmp_path / "caller-heard.wav")

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = transfer_api.ended_event(call["id"])
    transfer = ended["transfer"]
    assert (transfer["mode"], transfer["succeeded"]) == ("warm", False)
    # livekit's WarmTransferTask reports the SIP 486, or (when the busy answer races the dial's
    # own error path) only that the human could not be dialled
    assert "486" in transfer["error"] or "could not dial" in transfer["error"], transfer
    lines = said(ended)
    assert lines[lines.index(HANDOVER) + 1] == FAILED_REPLY
