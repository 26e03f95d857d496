"""End to end: what the worker reports about a call, and that no report is ever lost.

Real livekit-server, ``convoi-worker start`` subprocesses, the provider emulators, the simulated
caller and the reference receiver (``python -m convoi.receiver``) receiving signed events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from convoi.definitions.loader import load_definitions
from convoi.devstack.caller import CallerScript
from convoi.devstack.harness import (
    EmulatorsProcess,
    ReceiverProcess,
    WorkerProcess,
    dispatch_call,
    place_call,
)
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import E2E_EVENTS_SECRET, worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "scenarios" / "e2e_web.yaml"
UTTERANCES = ["Hi, I have a question about my bill.", "Thanks, that's all."]
PRICES = load_definitions("agents_config").definitions.prices


def web_spec(**fields: Any) -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
        "metadata": {"campaign": "e2e", "user_ref": "u_42"},
        **fields,
    }


async def call(
    server: LiveKitServer, worker: WorkerProcess, spec: dict[str, Any], utterances: list[str]
) -> Any:
    report = await place_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(utterances=utterances, max_wait_s=90),
        name="Dana",
        room_prefix="e2e-rep",
    )
    assert report.ok, report.errors
    return report


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in events if e["type"] == "call.status"]


async def test_web_call_reports_lifecycle_duration_and_cost(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(SCENARIO)
    spec = web_spec()
    report = await call(livekit_server, worker, spec, UTTERANCES)
    ended = (await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended"))[
        "event"
    ]
    events = [e["event"] for e in receiver.events(spec["call_id"])]

    # lifecycle and metadata on every event
    assert statuses(events) == ["initiated", "active", "completed"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert any(e["type"] == "call.progress" for e in events)
    assert all(e["metadata"] == spec["metadata"] for e in events)
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "completed",
        "customer_hangup",
        None,
    )

    # duration: from active to the caller hanging up, as the caller experienced it
    connected = report.left.wall - report.joined.wall
    assert abs(ended["duration_seconds"] - connected) < 1.0, (ended["duration_seconds"], connected)

    # transcript and latency ride on call.ended
    assert [t["role"] for t in ended["transcript"]] == [
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert ended["transcript"][1]["text"] == UTTERANCES[0]
    assert len(ended["latency"]) >= 2 and all(t["e2e_latency"] for t in ended["latency"][-2:])

    # cost = price list × the usage the emulators served
    served = emulators.requests("llm")
    usage = {u["kind"]: u for u in ended["usage"]}
    assert usage["llm"]["input_tokens"] == sum(r["usage"]["prompt_tokens"] for r in served)
    assert usage["llm"]["output_tokens"] == sum(r["usage"]["completion_tokens"] for r in served)
    tts_chars = sum(len(r["text"]) for r in emulators.requests("tts"))
    assert abs(usage["tts"]["characters"] - tts_chars) <= 2 * len(emulators.requests("tts"))
    # STT: the audio the session streamed to the recogniser, as the emulator received it (the
    # last few frames may still be in flight when the socket closes)
    stt_received = sum(r.get("audio_seconds", 0.0) for r in emulators.requests("stt"))
    assert abs(usage["stt"]["audio_seconds"] - stt_received) <= 0.5

    llm_price = PRICES.llm["openai"]["gpt-4o-mini"]
    expected_llm = (
        Decimal(usage["llm"]["input_tokens"]) * llm_price.input_per_1m
        + Decimal(usage["llm"]["output_tokens"]) * llm_price.output_per_1m
    ) / Decimal(1_000_000)
    expected_tts = (
        Decimal(usage["tts"]["characters"])
        * PRICES.tts["elevenlabs"]["eleven_turbo_v2_5"].per_1k_chars
        / 1000
    )
    expected_stt = (
        Decimal(repr(usage["stt"]["audio_seconds"]))
        * PRICES.stt["deepgram"]["nova-3"].per_minute
        / 60
    )
    expected_platform = (
        Decimal(repr(ended["duration_seconds"])) * PRICES.platform_fee_per_minute / 60
    )
    cost = {k: Decimal(v) for k, v in ended["cost"]["by_component"].items()}
    assert cost["llm"] == expected_llm
    assert cost["tts"] == expected_tts
    assert abs(cost["stt"] - expected_stt) < Decimal("1e-12")
    assert abs(cost["platform"] - expected_platform) < Decimal("1e-12")
    assert cost["telephony"] == 0  # web call
    with localcontext() as exact:
        exact.prec = 60
        assert abs(Decimal(ended["cost"]["amount"]) - sum(cost.values())) < Decimal("1e-40")
    assert ended["cost"]["unpriced"] == []


async def test_invalid_callspec_reports_failed_invalid_request_naming_the_field(
    livekit_server: LiveKitServer, worker: WorkerProcess, receiver: ReceiverProcess
) -> None:
    spec = web_spec(participant_name="x" * 300)  # over 256 characters
    room = f"e2e-bad-{uuid.uuid4().hex[:8]}"
    await dispatch_call(
        livekit_server.url,
        livekit_server.api_key,
        livekit_server.api_secret,
        agent_name=worker.agent_name,
        room=room,
        metadata=spec,
    )
    ended = (await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended"))[
        "event"
    ]
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "failed",
        "invalid_request",
        "config",
    )
    assert ended["detail"].startswith("participant_name: too long")
    assert ended["metadata"] == spec["metadata"]
    assert statuses([e["event"] for e in receiver.events(spec["call_id"])]) == [
        "initiated",
        "failed",
    ]


async def test_events_survive_a_receiver_outage_and_a_worker_restart(
    livekit_server: LiveKitServer, emulators: EmulatorsProcess, artifacts_dir: Path
) -> None:
    """The receiver is down for 30 s from the middle of a call; the worker is restarted after the
    call. Every event arrives, none is applied twice, and sequence numbers give the order."""
    work = artifacts_dir / "outage"
    work.mkdir(exist_ok=True)
    receiver = ReceiverProcess(
        work / "receiver.log", work / "receiver.sqlite3", secret=E2E_EVENTS_SECRET
    )
    receiver.start_and_wait()
    outbox = work / "outbox.sqlite3"
    env = worker_env(livekit_server, emulators, receiver, outbox)
    worker = WorkerProcess(
        work / "worker-1.log", env, agent_name="convoi-e2e-outage"
    ).start_and_wait()
    restarted: WorkerProcess | None = None
    try:
        emulators.load_scenario(SCENARIO)
        spec = web_spec()
        caller = asyncio.create_task(call(livekit_server, worker, spec, UTTERANCES))
        await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.progress")
        receiver.stop()  # outage starts mid-call
        down_at = time.monotonic()
        await caller  # the call carries on and ends while the receiver is down
        await asyncio.to_thread(
            worker.wait_for_record, "call ended", 120.0, call_id=spec["call_id"]
        )
        worker.stop(timeout=30)  # restart the worker after the call, events still undelivered
        restarted = WorkerProcess(
            work / "worker-2.log", env, agent_name="convoi-e2e-outage"
        ).start_and_wait()
        await asyncio.sleep(max(0.0, 30.0 - (time.monotonic() - down_at)))  # the outage lasts 30 s
        receiver.start_and_wait()

        ended = (
            await asyncio.to_thread(receiver.wait_for_event, spec["call_id"], "call.ended", 120.0)
        )["event"]
        stored = receiver.events(spec["call_id"])
        sequences = [e["sequence"] for e in stored]
        assert sequences == list(
            range(1, ended["sequence"] + 1)
        )  # every event, each once, in order
        assert len({e["id"] for e in stored}) == len(stored)
        assert statuses([e["event"] for e in stored]) == ["initiated", "active", "completed"]
        state = receiver.call(spec["call_id"])
        assert state is not None
        assert (state["status"], state["ended_reason"]) == ("completed", "customer_hangup")
        assert state["events_received"] == len(stored)  # nothing applied twice
        assert (
            sum(1 for e in stored if e["event"]["type"] == "call.progress") >= 5
        )  # queued while down
    finally:
        for proc in (restarted, worker, receiver):
            if proc is not None:
                proc.stop()
