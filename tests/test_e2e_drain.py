"""End to end: SIGTERM drains a worker without losing a call.

Worker A runs three web calls when it gets SIGTERM (as an orchestrator stops a pod): it stops
taking jobs, the three calls carry on to their natural end and report ``completed``, and A exits
cleanly after them. A call dispatched during the drain is served by worker B, started meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from convoi.devstack.caller import CallerScript
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, place_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

AGENT_NAME = "convoi-e2e-drain"
LINES = ["Hi, I have a question about my bill.", "And when is it due?", "Thanks, that's all."]


def _spec() -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
    }


async def test_sigterm_drains_three_calls_and_a_new_call_goes_to_another_worker(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> None:
    emulators.load_scenario({"caller": LINES, "caller_repeat": True, "default_reply": "Okay."})
    work = artifacts_dir / "drain"
    env = worker_env(livekit_server, emulators, receiver, work / "outbox-a.sqlite3")
    env["CONVOI_NUM_IDLE_PROCESSES"] = "3"
    first = WorkerProcess(work / "worker-a.log", env, agent_name=AGENT_NAME).start_and_wait()
    second: WorkerProcess | None = None

    def call(spec: dict[str, Any], lines: list[str]) -> asyncio.Task[Any]:
        return asyncio.create_task(
            place_call(
                livekit_server.url,
                livekit_server.api_key,
                livekit_server.api_secret,
                agent_name=AGENT_NAME,
                spec=spec,
                script=CallerScript(utterances=lines, max_wait_s=120),
                name="Dana",
                room_prefix="e2e-drain",
            )
        )

    try:
        specs = [_spec() for _ in range(3)]
        callers = [call(spec, LINES) for spec in specs]
        for spec in specs:  # all three are live on worker A
            await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.progress", 120)
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGTERM)  # the worker, as an orchestrator stops it
        await asyncio.to_thread(first.wait_for_record, "draining worker", 30)

        env_b = worker_env(livekit_server, emulators, receiver, work / "outbox-b.sqlite3")
        env_b["CONVOI_NUM_IDLE_PROCESSES"] = "1"  # one late call; spare the busy CPU warm-ups
        second = WorkerProcess(work / "worker-b.log", env_b, agent_name=AGENT_NAME)
        second.start_and_wait()
        late = _spec()
        late_caller = call(late, LINES[:1])

        for spec, caller in zip(specs, callers, strict=True):
            report = await asyncio.wait_for(caller, 180)
            assert report.ok, report.errors
            ended = (
                await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended")
            )["event"]
            assert (ended["status"], ended["ended_reason"]) == ("completed", "customer_hangup")
            said = [t["text"] for t in ended["transcript"] if t["role"] == "user"]
            # the whole conversation, not cut short (on a saturated machine one utterance can
            # reach the STT as two finals: more turns, never fewer)
            assert len(said) >= len(LINES)
        assert (await asyncio.to_thread(first.proc.wait, 120)) == 0  # exits once they are done

        assert (await asyncio.wait_for(late_caller, 180)).ok
        late_ended = (
            await asyncio.to_thread(receiver.wait_for_event, late["call_id"], "call.ended")
        )["event"]
        assert late_ended["status"] == "completed"
        assert second.find("call accepted", call_id=late["call_id"])  # served by worker B
        assert not first.find("call accepted", call_id=late["call_id"])
    finally:
        for worker in (second, first):
            if worker is not None:
                worker.stop(timeout=30)
