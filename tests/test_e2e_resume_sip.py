"""End to end over the real SIP bridge: a phone call whose job process is killed is resumed.

convoi-api dispatches the call, the worker dials SIPp through livekit-sip; the callee says its
name, the agent answers; the test SIGKILLs the job process (the worker's main process survives).
The phone leg stays in the room, so the main process dispatches the agent again with the call's
checkpoint: the new job neither dials nor greets, says the apology, and answers the callee's next
line from the restored history (the LLM emulator's rule for "what is my name" answers with the
name only when the request holds two user turns, the one before the crash included). The call
ends normally, once, with one transcript and a duration covering the whole call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess
from convoi.devstack.sip_stack import SipStack
from convoi.devstack.sipp import Behaviour
from tests.helpers import SALES
from tests.sip_calls import (
    PHONE_IDENTITY,
    SipApi,
    callee,
    phone_call,
    start_sip_api,
    wait_for_speech_after,
)

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-resume-sip"
APOLOGY = "Sorry, I lost you for a moment."
NAME_LINE = "My name is Ada."
ASK_LINE = "What is my name?"
NICE = "Nice to meet you, Ada."
REMEMBERED = "Your name is Ada."
FORGOT = "Sorry, I do not know your name."
SCENARIO = {
    "caller": [NAME_LINE, ASK_LINE],
    "llm": [
        {"when": {"last_user_contains": "name is"}, "say": NICE},
        # two user turns in the request: the one from before the crash came back with the history
        {"when": {"last_user_contains": "what is my name", "turn": 2}, "say": REMEMBERED},
        {"when": {"last_user_contains": "what is my name"}, "say": FORGOT},
    ],
    "default_reply": "Okay.",
}
ASK_AFTER_S = 16.0
"""The callee asks its second line this long after the first ends (the job dies and is resumed in
between: measured well under 2 s with a warm idle process; the agent's silence timeout, 20 s,
bounds how long the pause may be before it asks "are you still there?")."""


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
        tmp_path_factory.mktemp("sip-resume"),
        artifacts_dir / "worker-resume-sip.log",
        agent_name=AGENT_NAME,
        extra_env={"CONVOI_RESUME_APOLOGY": APOLOGY},
    ) as sip:
        yield sip


def wait_for_checkpoint_with(sip: SipApi, call_id: str, text: str, timeout: float = 90.0) -> None:
    """Wait until the control plane's stored checkpoint of the call holds ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(sip.database) as db:
            row = db.execute(
                "SELECT body FROM call_checkpoints WHERE call_id = ?", (call_id,)
            ).fetchone()
        if row and text in row[0]:
            return
        assert time.monotonic() < deadline, f"no checkpoint with {text!r} for {call_id}"
        time.sleep(0.2)  # the control plane's database, as the events land


async def test_a_killed_job_process_resumes_the_sip_call_in_a_new_job(
    sip_api: SipApi, emulators: EmulatorsProcess, tmp_path: Path
) -> None:
    emulators.load_scenario(SCENARIO)
    talk = Behaviour.answer_talk(NAME_LINE, delay_s=8.0, then=((ASK_AFTER_S, ASK_LINE),))
    with callee(talk, tmp_path) as phone:
        call = sip_api.create(phone_call(SALES))
        answered = phone.wait_for_answer(60)
        accepted = await asyncio.to_thread(
            sip_api.worker.wait_for_record, "call accepted", call_id=call["id"]
        )
        await asyncio.to_thread(wait_for_checkpoint_with, sip_api, call["id"], NICE)
        killed_at = time.time()
        os.kill(int(accepted["pid"]), signal.SIGKILL)  # the job process, not the worker
        resumed = await asyncio.to_thread(
            sip_api.worker.wait_for_record, "call resumed", call_id=call["id"]
        )
        assert int(resumed["pid"]) != int(accepted["pid"])  # another job process
        apology = await asyncio.to_thread(wait_for_speech_after, phone, killed_at)
        asked_at = answered.at + 8.0 + ASK_AFTER_S
        await asyncio.to_thread(wait_for_speech_after, phone, asked_at)  # the reply to it
        await sip_api.hang_up_as_the_callee(call["room_id"], PHONE_IDENTITY)
        final = await asyncio.to_thread(sip_api.wait_for_terminal, call["id"])
        heard = phone.recording()
    heard.write_wav(tmp_path / "callee-heard.wav")
    started = heard.started_at
    assert started is not None and apology.started_at is not None
    after_kill = [s for s in heard.segments() if started + s.start_s > killed_at]
    before_ask = [s for s in after_kill if started + s.start_s < asked_at]
    after_ask = [s for s in after_kill if started + s.start_s > asked_at]
    assert before_ask and sum(s.duration_s for s in before_ask) > 1.0  # the apology, heard
    assert after_ask and sum(s.duration_s for s in after_ask) > 0.5, [  # the answer, heard
        (round(started + s.start_s - answered.at, 2), s.duration_s) for s in after_kill
    ]
    tts = [r.get("text") for r in emulators.requests("tts")]
    assert APOLOGY in tts and REMEMBERED in tts and FORGOT not in tts

    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    ended = sip_api.ended_event(call["id"])  # exactly one call.ended (asserted there)
    said = [(t["role"], t["text"]) for t in ended["transcript"]]
    assert said[1:] == [
        ("user", NAME_LINE),
        ("assistant", NICE),
        ("assistant", APOLOGY),
        ("user", ASK_LINE),
        ("assistant", REMEMBERED),
    ]
    assert said[0][0] == "assistant"  # the greeting, said once, before the crash
    # duration covers the whole call: from the answer to the hang-up, the death included
    assert final["duration_seconds"] >= 8.0 + ASK_AFTER_S
    assert ended["cost"]["by_component"]["telephony"] != "0"
    assert "checkpoint" not in ended or ended["checkpoint"] is None
    with sqlite3.connect(sip_api.database) as db:
        (left,) = db.execute(
            "SELECT count(*) FROM call_checkpoints WHERE call_id = ?", (call["id"],)
        ).fetchone()
    assert left == 0  # customer speech is not kept past the call
    print(
        f"resume: job killed at +{killed_at - answered.at:.1f} s, "
        f"resumed log at +{_ts(resumed) - answered.at:.1f} s, "
        f"apology heard at +{started + before_ask[0].start_s - answered.at:.1f} s after answer; "
        f"recovery {started + before_ask[0].start_s - killed_at:.1f} s"
    )


def _ts(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()
