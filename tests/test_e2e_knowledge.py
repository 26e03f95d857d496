"""End to end: a web call whose agent answers from its knowledge base.

Real livekit-server, ``convoi-worker start`` (which builds the knowledge index at start-up, in
its main process, into a folder of this module's own), the scripted caller speaking real audio;
the model providers are the emulators. The LLM emulator answers with the fact only when the
retrieved chunk reached its request (``context_contains``); otherwise it says it does not know.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convoi.devstack.caller import CallerReport, CallerScript
from convoi.devstack.emulators.llm_script import message_text
from convoi.devstack.harness import EmulatorsProcess, ReceiverProcess, WorkerProcess, place_call
from convoi.devstack.livekit_server import LiveKitServer
from tests.conftest import worker_env
from tests.helpers import SUPPORT

pytestmark = pytest.mark.e2e

BILLING_KB = "kb_7e4d2c1b0a9f48e6b5d3c2a1f0e9d8c7"
RETENTION_Q = "How long do you keep call transcripts?"
RETENTION_FACT = "Call transcripts are kept for 90 days"  # help_centre/account.md only
FEE_Q = "How much is the platform fee per minute?"
FEE_FACT = "The platform fee is 2 cents (0.02 USD) per minute"  # billing/pricing.md only
UNRELATED = "We accept Visa, Mastercard and American Express"  # billing/invoices.md
DONT_KNOW = "I'm sorry, I don't know that."
SCENARIO: dict[str, Any] = {
    "llm": [
        {
            "when": {"context_contains": RETENTION_FACT},
            "say": "We keep transcripts for ninety days.",
        },
        {"when": {"context_contains": FEE_FACT}, "say": "The platform fee is two cents a minute."},
    ],
    "default_reply": DONT_KNOW,
}


@pytest.fixture(scope="module")
def kb_worker(
    livekit_server: LiveKitServer,
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
    artifacts_dir: Path,
) -> Iterator[tuple[WorkerProcess, Path]]:
    """A worker of this module's own, its knowledge index in ``artifacts/knowledge-index/``."""
    cache = artifacts_dir / "knowledge-index"
    for old in cache.glob("knowledge-*.sqlite"):
        old.unlink()
    outbox = artifacts_dir / "outbox-knowledge.sqlite3"
    outbox.unlink(missing_ok=True)
    env = {
        **worker_env(livekit_server, emulators, receiver, outbox),
        "CONVOI_KNOWLEDGE_DIR": str(cache),
    }
    proc = WorkerProcess(artifacts_dir / "worker-knowledge.log", env, agent_name="convoi-e2e-kb")
    proc.start_and_wait()
    yield proc, cache
    proc.stop(timeout=30)


async def ask(
    server: LiveKitServer,
    worker: WorkerProcess,
    receiver: ReceiverProcess,
    question: str,
    **spec: Any,
) -> tuple[CallerReport, dict[str, Any]]:
    call = {
        "call_id": f"call_{uuid.uuid4().hex[:16]}",
        "type": "web",
        "agent_id": SUPPORT,
        "participant_name": "Dana",
        **spec,
    }
    report = await place_call(
        server.url,
        server.api_key,
        server.api_secret,
        agent_name=worker.agent_name,
        spec=call,
        # a generous end of speech: on a loaded machine the greeting's audio can pause mid-way
        script=CallerScript(utterances=[question], max_wait_s=180, end_silence_ms=1500),
        name="Dana",
        room_prefix="e2e-kb",
    )
    event = await asyncio.to_thread(receiver.wait_for_event, call["call_id"], "call.ended")
    return report, event["event"]


def turn_request(emulators: EmulatorsProcess, question: str) -> str:
    """Everything the LLM was sent on the turn that answered ``question``: the last request
    whose last user message is the question (a preemptive request livekit-agents started before
    the turn ended, without the knowledge, is invalidated by it and comes first)."""
    for request in reversed(emulators.requests("llm")):
        users = [m for m in request["messages"] if m.get("role") == "user"]
        if users and question in message_text(users[-1]):
            return " ".join(message_text(m) for m in request["messages"])
    raise AssertionError(f"no LLM request answered {question!r}")


def retrieval_turn(event: dict[str, Any]) -> dict[str, Any]:
    turns = [t for t in event["latency"] if t.get("retrieval_seconds") is not None]
    assert len(turns) == 1, event["latency"]
    return turns[0]


async def test_the_agent_answers_from_its_knowledge_base(
    livekit_server: LiveKitServer,
    kb_worker: tuple[WorkerProcess, Path],
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    worker, cache = kb_worker
    assert len(list(cache.glob("knowledge-*.sqlite"))) == 1  # built once, at start-up
    emulators.load_scenario({"caller": [RETENTION_Q], **SCENARIO})
    report, ended = await ask(livekit_server, worker, receiver, RETENTION_Q)

    assert report.ok, report.errors
    sent = turn_request(emulators, RETENTION_Q)
    assert RETENTION_FACT in sent and FEE_FACT not in sent and UNRELATED not in sent
    assert "We keep transcripts for ninety days." in report.transcript_texts(report.agent_identity)
    turn = retrieval_turn(ended)
    assert "account#data-retention-and-privacy" in turn["retrieval_chunks"]  # among the top 3
    assert turn["retrieval_error"] is None and turn["retrieval_seconds"] >= 0
    print(f"\nretrieval {turn['retrieval_seconds'] * 1000:.2f} ms, e2e {turn.get('e2e_latency')}")


async def test_a_call_override_with_another_knowledge_base_changes_what_the_llm_gets(
    livekit_server: LiveKitServer,
    kb_worker: tuple[WorkerProcess, Path],
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    worker, _ = kb_worker
    emulators.load_scenario({"caller": [FEE_Q, FEE_Q], **SCENARIO})
    _, own = await ask(livekit_server, worker, receiver, FEE_Q)  # support: help centre only
    assert FEE_FACT not in turn_request(emulators, FEE_Q)
    assert all(not c.startswith("pricing#") for c in retrieval_turn(own)["retrieval_chunks"])

    emulators.load_scenario({"caller": [FEE_Q], **SCENARIO})
    overrides = {"agent_overrides": {"knowledge_base_ids": [BILLING_KB]}}
    report, ended = await ask(livekit_server, worker, receiver, FEE_Q, **overrides)
    assert FEE_FACT in turn_request(emulators, FEE_Q)
    assert retrieval_turn(ended)["retrieval_chunks"][0] == "pricing#platform-fee"
    assert "The platform fee is two cents a minute." in report.transcript_texts(
        report.agent_identity
    )


async def test_a_corrupt_index_leaves_the_agent_answering_and_the_event_says_so(
    livekit_server: LiveKitServer,
    kb_worker: tuple[WorkerProcess, Path],
    emulators: EmulatorsProcess,
    receiver: ReceiverProcess,
) -> None:
    worker, cache = kb_worker
    (index,) = cache.glob("knowledge-*.sqlite")
    size = index.stat().st_size
    with index.open("r+b") as f:  # in place: job processes that opened it read garbage too
        f.write(b"\xff" * size)
    emulators.load_scenario({"caller": [RETENTION_Q], **SCENARIO})
    report, ended = await ask(livekit_server, worker, receiver, RETENTION_Q)

    assert report.ok, report.errors
    assert DONT_KNOW in report.transcript_texts(report.agent_identity)  # answered, no context
    assert RETENTION_FACT not in turn_request(emulators, RETENTION_Q)
    turn = retrieval_turn(ended)
    assert turn["retrieval_chunks"] == [] and "knowledge" in turn["retrieval_error"]
    assert ended["status"] == "completed"
