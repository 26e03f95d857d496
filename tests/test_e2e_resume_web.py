"""End to end: a web call whose whole worker is killed is resumed by a second worker.

Real pieces: convoi-api (SQLite), livekit-server, TWO ``convoi-worker start`` of the same agent
name (each with its own outbox, as on two machines), the emulated providers and the scripted
browser caller. The caller says its name, the agent answers; the test SIGKILLs the worker
conducting the call (its main process and its job processes: its process group). Nobody reports
the call any more; the control plane's lease sweep sees it silent for
``CONVOI_CALL_RESUME_AFTER_SECONDS`` with the caller alone in the room and dispatches the agent
again with the stored checkpoint; the other worker takes it, apologises and answers the caller's
next question from the restored history (the LLM emulator says the name only when the request
holds two user turns). GET shows one call, ``completed``, its duration covering the whole call
and its cost continuous.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from convoi.controlplane import ControlPlaneSettings
from convoi.devstack.caller import CallerScript, run_caller
from convoi.devstack.controlplane_harness import ControlPlaneServer
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-resume-web"
SECRET = "e2e-resume-events-secret-0123456789"
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
        {"when": {"last_user_contains": "what is my name", "turn": 2}, "say": REMEMBERED},
        {"when": {"last_user_contains": "what is my name"}, "say": FORGOT},
    ],
    "default_reply": "Okay.",
}
RESUME_AFTER_S = 4.0


@dataclass
class Stack:
    server: ControlPlaneServer
    key: str
    database: Path
    workers: list[WorkerProcess]

    def get(self, call_id: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.server.url}/api/v1/public/calls/{call_id}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        resp.raise_for_status()
        return dict(resp.json())

    def checkpoint(self, call_id: str) -> str | None:
        with sqlite3.connect(self.database) as db:
            row = db.execute(
                "SELECT body FROM call_checkpoints WHERE call_id = ?", (call_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def ended_events(self, call_id: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.database) as db:
            rows = db.execute(
                "SELECT body FROM call_events WHERE call_id = ? AND type = 'call.ended'",
                (call_id,),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]


def wait_until(what: str, check: Any, timeout: float = 90.0) -> Any:
    """Poll ``check()`` (an outside system's state: a log, a database) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # polling another process's state: nothing to wait on but it
    return value


@pytest.fixture(scope="module")
def stack(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("resume-web")
    database = work / "controlplane.sqlite3"
    settings = ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{database}",
        CONVOI_EVENTS_SECRET=SECRET,
        CONVOI_AGENT_NAME=AGENT_NAME,
        CONVOI_CALL_RESUME_AFTER_SECONDS=RESUME_AFTER_S,
        CONVOI_CALL_LEASE_SECONDS=60,
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY=livekit_server.api_key,
        LIVEKIT_API_SECRET=livekit_server.api_secret,
    )
    server = ControlPlaneServer(settings).start()
    workers: list[WorkerProcess] = []
    try:
        for name in ("a", "b"):
            env = {
                **worker_env(livekit_server, emulators, receiver, work / f"outbox-{name}.sqlite3"),
                **server.worker_env(),
                "CONVOI_RESUME_APOLOGY": APOLOGY,
                "CONVOI_HEALTH_PORT": "0",
            }
            log = artifacts_dir / f"worker-resume-web-{name}.log"
            workers.append(WorkerProcess(log, env, agent_name=AGENT_NAME).start_and_wait())
        yield Stack(server, server.create_key("acct_e2e_resume", "sk_live"), database, workers)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


async def test_a_killed_worker_s_web_call_is_resumed_by_another_worker(
    stack: Stack, emulators: EmulatorsProcess
) -> None:
    emulators.load_scenario(SCENARIO)
    resp = httpx.post(
        f"{stack.server.url}/api/v1/public/calls",
        json={"type": "web", "agent_id": SUPPORT, "participant_name": "Ada"},
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    call_id = created["id"]
    moments: dict[str, float] = {}
    before: dict[str, Any] = {}

    def conducting() -> WorkerProcess | None:
        return next((w for w in stack.workers if w.find("call accepted", call_id=call_id)), None)

    async def crash_before_the_question(turn: int) -> None:
        if turn != 2:
            return
        await asyncio.to_thread(
            wait_until,
            "a checkpoint with the reply",
            lambda: NICE in (stack.checkpoint(call_id) or ""),
        )
        first = conducting()
        assert first is not None
        before.update(stack.get(call_id))
        moments["killed"] = time.time()
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)  # the main process and its job processes
        second = next(w for w in stack.workers if w is not first)
        resumed = await asyncio.to_thread(
            second.wait_for_record, "call resumed", 120.0, call_id=call_id
        )
        moments["resumed_log"] = _ts(resumed)
        await asyncio.to_thread(  # the apology was said (committed once played out)
            wait_until, "the apology", lambda: APOLOGY in (stack.checkpoint(call_id) or "")
        )
        moments["apologised"] = time.time()

    script = CallerScript(
        utterances=[NAME_LINE, ASK_LINE],
        follow_new_agent=True,
        before_turn=crash_before_the_question,
        max_wait_s=120,
    )
    report = await run_caller(created["livekit"]["url"], created["livekit"]["token"], script)
    assert not [e.message for e in report.events if e.kind == "error"]

    final = await asyncio.to_thread(
        wait_until,
        "the call's end",
        lambda: (c := stack.get(call_id))["status"] in ("completed", "failed") and c,
    )
    assert (final["status"], final["ended_reason"]) == ("completed", "customer_hangup")
    [ended] = await asyncio.to_thread(
        wait_until, "call.ended stored", lambda: stack.ended_events(call_id)
    )  # exactly one
    said = [(t["role"], t["text"]) for t in ended["transcript"]]
    assert said[1:] == [
        ("user", NAME_LINE),
        ("assistant", NICE),
        ("assistant", APOLOGY),
        ("user", ASK_LINE),
        ("assistant", REMEMBERED),
    ]
    heard = [t.text for t in report.transcripts if t.final]
    assert APOLOGY in heard and REMEMBERED in heard  # what the caller's browser was sent
    turn2 = report.turns[1]
    assert turn2.first_reply_audio is not None  # and heard it: the reply's audio came
    # duration and cost continue across the crash
    assert final["duration_seconds"] > before["duration_seconds"] + (
        moments["apologised"] - moments["killed"]
    )
    assert final["cost"]["amount"] >= before["cost"]["amount"] > 0
    assert stack.checkpoint(call_id) is None  # not kept past the call
    recovery = moments["apologised"] - moments["killed"]
    print(
        f"resume (whole worker killed): dispatched again and resumed after "
        f"{moments['resumed_log'] - moments['killed']:.1f} s; apology said "
        f"{recovery:.1f} s after the kill (CONVOI_CALL_RESUME_AFTER_SECONDS={RESUME_AFTER_S})"
    )


def _ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()
