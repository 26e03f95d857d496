"""End to end: provider faults on a web call (livekit-server, the worker, the emulators).

The emulators fail a provider's first request(s): the LLM answers HTTP 500, the STT socket is
dropped, the TTS never answers. With a fallback configured (per call, ``agent_overrides.fallbacks``)
the caller still hears the reply and ``call.ended`` bills the model that served. With every
provider of a kind failing, the caller hears the pre-rendered apology and the call ends
``failed`` / ``provider_error``. Time bounds are generous (a busy 2-core machine); the numbers are
printed for the report.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from convoi.devstack.caller import CallerReport, CallerScript
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, place_call
from convoi.devstack.livekit_server import LiveKitServer
from convoi.worker.apology import APOLOGY_TEXT
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

GREETING = "Hi Dana, thanks for calling Convoi support. How can I help you today?"
QUESTION = "Hi, I have a question about my bill."
REPLY = "Of course, I can help with your bill."
REPLY_BOUND_S = 30.0
"""A reply must start within this long after the caller stopped speaking, failover included."""


def web_spec(fallbacks: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
        "agent_overrides": {"fallbacks": fallbacks},
    }


def scenario(faults: list[dict[str, Any]]) -> dict[str, Any]:
    # caller_repeat: a fallback adapter probing a failed STT hears the question too
    return {"caller": [QUESTION], "caller_repeat": True, "default_reply": REPLY, "faults": faults}


async def call(
    server: LiveKitServer,
    worker: WorkerProcess,
    spec: dict[str, Any],
    *,
    utterances: list[str],
    hang_up_after: bool = True,
    artifacts: Path | None = None,
) -> CallerReport:
    report = await place_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        spec=spec,
        script=CallerScript(utterances=utterances, hang_up_after=hang_up_after, max_wait_s=90),
        name="Dana",
        room_prefix="e2e-fallback",
    )
    if artifacts is not None:
        report.save_wav(artifacts / f"{spec['call_id']}.wav")
    return report


async def ended_event(receiver: ReceiverProcess, call_id: str) -> dict[str, Any]:
    return (await asyncio.to_thread(receiver.wait_for_event, call_id, "call.ended"))["event"]


def usage_of(ended: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {u["model"]: u for u in ended["usage"] if u["kind"] == kind}


def heard_the_reply(report: CallerReport) -> float:
    """Seconds from the end of the caller's question to the start of the reply they heard."""
    assert report.errors == [], report.errors
    assert REPLY in report.transcript_texts(report.agent_identity)
    (latency_ms,) = report.reply_latencies_ms
    assert latency_ms is not None, "no reply was heard"
    assert latency_ms / 1000 < REPLY_BOUND_S
    return latency_ms / 1000


async def test_an_llm_answering_500_is_replaced_by_its_fallback(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> None:
    emulators.load_scenario(scenario([{"provider": "llm", "on_request": 1, "kind": "http_500"}]))
    spec = web_spec({"llm": [{"model": "gpt-4o"}]})
    report = await call(livekit_server, worker, spec, utterances=[QUESTION])
    ended = await ended_event(receiver, spec["call_id"])

    latency = heard_the_reply(report)
    print(f"LLM 500 -> fallback: reply heard {latency:.2f} s after the question")
    llm = emulators.requests("llm")
    assert (llm[0]["model"], llm[0]["fault"]) == ("gpt-4o-mini", "http_500")
    # the fallback answered (the adapter also probes the failed primary in the background)
    assert any((r["model"], r["fault"]) == ("gpt-4o", None) for r in llm[1:]), llm
    assert (ended["status"], ended["ended_reason"]) == ("completed", "customer_hangup")
    served = usage_of(ended, "llm")["gpt-4o"]  # the events name the model that served
    assert served["provider"] == "openai" and served["output_tokens"] > 0
    assert REPLY in [t["text"] for t in ended["transcript"] if t["role"] == "assistant"]


async def test_a_dropped_stt_socket_is_replaced_by_its_fallback(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    emulators.load_scenario(
        scenario([{"provider": "stt", "on_request": 1, "kind": "drop", "drop_after_ms": 200}])
    )
    spec = web_spec({"stt": [{"model": "nova-2"}]})
    report = await call(livekit_server, worker, spec, utterances=[QUESTION])
    ended = await ended_event(receiver, spec["call_id"])

    latency = heard_the_reply(report)
    print(f"STT drop -> fallback: reply heard {latency:.2f} s after the question")
    stt = emulators.requests("stt")
    assert (stt[0]["model"], stt[0]["closed_by"]) == ("nova-3", "fault_drop")
    assert any(r["model"] == "nova-2" and r["transcripts"] for r in stt), stt
    assert QUESTION in [t["text"] for t in ended["transcript"] if t["role"] == "user"]
    assert usage_of(ended, "stt")["nova-2"]["audio_seconds"] > 0


async def test_a_stalled_tts_is_replaced_by_its_fallback(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    # request 1 is the greeting rendered while the caller joins (given up after 2 s), request 2
    # the greeting spoken live: both stall, so the session's fallback adapter moves to flash
    stalls = [{"provider": "tts", "on_request": n, "kind": "stall"} for n in (1, 2)]
    emulators.load_scenario(scenario(stalls))
    spec = web_spec({"tts": [{"voice_id": "rachel", "model": "eleven_flash_v2_5"}]})
    report = await call(livekit_server, worker, spec, utterances=[QUESTION])
    ended = await ended_event(receiver, spec["call_id"])

    assert report.greeting_latency_ms is not None
    print(f"TTS stall -> fallback: greeting heard {report.greeting_latency_ms / 1000:.2f} s in")
    assert GREETING in report.transcript_texts(report.agent_identity)
    heard_the_reply(report)
    tts = emulators.requests("tts")
    assert (tts[0]["model_id"], tts[0]["fault"]) == ("eleven_turbo_v2_5", "stall")
    assert any(r["model_id"] == "eleven_flash_v2_5" and r["audio_seconds"] > 0 for r in tts)
    assert usage_of(ended, "tts")["eleven_flash_v2_5"]["characters"] > 0
    assert (ended["status"], ended["ended_reason"]) == ("completed", "customer_hangup")


def heard_the_apology(report: CallerReport, after: float = 0.0) -> None:
    """The apology's words were sent and its audio (about 7 s) heard, after ``after`` (mono)."""
    assert APOLOGY_TEXT in report.transcript_texts(report.agent_identity)
    heard = sum(s.duration_s for s in report.segments if s.start.mono > after)
    assert heard > 3, report.segments


async def test_with_every_llm_down_the_caller_hears_the_apology_and_the_call_fails(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    down = [{"provider": "llm", "on_request": n, "kind": "http_500"} for n in range(1, 21)]
    emulators.load_scenario(scenario(down))
    spec = web_spec({"llm": [{"model": "gpt-4o"}]})
    report = await call(livekit_server, worker, spec, utterances=[QUESTION], hang_up_after=False)
    ended = await ended_event(receiver, spec["call_id"])

    (turn,) = report.turns
    assert turn.end_of_speech is not None and report.segments
    heard_the_apology(report, after=turn.end_of_speech.mono)
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "failed",
        "provider_error",
        "provider",
    )
    assert ended["detail"] == "every llm provider failed"
    assert {r["model"] for r in emulators.requests("llm")} == {"gpt-4o-mini", "gpt-4o"}
    apology_over = report.segments[-1].end.mono - turn.end_of_speech.mono
    print(f"all LLMs down: apology over {apology_over:.2f} s after the question")
    assert apology_over < 60
    assert ended["duration_seconds"] < 120  # the greeting, the question, the apology, the end


async def test_with_every_tts_down_the_pre_rendered_apology_still_plays(
    livekit_server: LiveKitServer,
    worker: WorkerProcess,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    down = [{"provider": "tts", "on_request": n, "kind": "http_500"} for n in range(1, 21)]
    emulators.load_scenario(scenario(down))
    spec = web_spec({"tts": [{"voice_id": "rachel", "model": "eleven_flash_v2_5"}]})
    report = await call(livekit_server, worker, spec, utterances=[], hang_up_after=False)
    ended = await ended_event(receiver, spec["call_id"])

    heard_the_apology(report)  # no TTS answered: this is the WAV rendered at build time
    assert GREETING not in report.transcript_texts(report.agent_identity)
    assert all(r["audio_seconds"] == 0 for r in emulators.requests("tts"))
    assert (ended["status"], ended["ended_reason"], ended["fault"]) == (
        "failed",
        "provider_error",
        "provider",
    )
    assert ended["detail"] == "every tts provider failed"
