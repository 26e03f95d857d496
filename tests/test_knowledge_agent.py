"""The agent answers from its knowledge bases: text-mode sessions with a scripted LLM.

What the LLM receives on each turn is asserted from the fake's recorded requests; the per-turn
retrieval figures from the transcript recorder the call uses for ``call.ended``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from livekit.agents import llm

from convoi.agent import DetachedControls
from convoi.callspec import ResolvedCall, resolve_call
from convoi.definitions.models import Agent, Definitions
from convoi.knowledge import Fts5Index, Retriever, ensure_index
from convoi.knowledge.retrieval import CONTEXT_PREAMBLE
from convoi.pipeline import Pipeline
from convoi.settings import WorkerSettings
from convoi.worker.recording import TranscriptRecorder
from convoi.worker.session import build_session
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import AGENTS_CONFIG, SUPPORT

BILLING_KB = "kb_7e4d2c1b0a9f48e6b5d3c2a1f0e9d8c7"
QUESTION = "How much is the platform fee per minute?"
ANSWER_TEXT = "2 cents (0.02 USD) per minute"  # only in billing/pricing.md


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, defs: Definitions) -> Fts5Index:
    plan, _ = ensure_index(defs, AGENTS_CONFIG, tmp_path_factory.mktemp("kb"))
    return Fts5Index.open(plan.path)


class Harness:
    def __init__(self) -> None:
        self.llm: ScriptedLLM | None = None

    def factory(self, agent: Agent, settings: WorkerSettings) -> Pipeline:
        self.llm = ScriptedLLM([Reply("It is two cents a minute.")], model=agent.llm.model)
        return Pipeline(stt=None, llm=self.llm, tts=None)


def call(defs: Definitions, **fields: Any) -> ResolvedCall:
    spec = {"call_id": "call_kbtext0001", "type": "web", "agent_id": SUPPORT, **fields}
    return resolve_call(spec, defs)


async def converse(
    resolved: ResolvedCall, retriever: Retriever, turns: list[str]
) -> tuple[list[list[dict[str, Any]]], TranscriptRecorder]:
    """Each turn as livekit-agents runs it: ``on_user_turn_completed`` on a copy of the agent's
    context (which it must leave unchanged, or livekit throws away a reply started early), then
    the reply; returns what the LLM was sent for each turn."""
    harness = Harness()
    controls = DetachedControls(retriever=retriever)
    session, agent, _ = build_session(
        resolved, WorkerSettings(), vad=None, controls=controls, pipeline_factory=harness.factory
    )
    recorder = TranscriptRecorder(lambda: "agent")
    sent: list[list[dict[str, Any]]] = []
    async with session:
        await session.start(agent)
        for text in turns:
            message = llm.ChatMessage(role="user", content=[text])
            turn_ctx = agent.chat_ctx.copy()
            before = [item.id for item in turn_ctx.items]
            await agent.on_user_turn_completed(turn_ctx, new_message=message)
            assert [item.id for item in turn_ctx.items] == before  # an early reply is kept
            recorder.record(message)
            reply = await session.generate_reply(user_input=text)  # the agent answers
            await reply
            assert harness.llm is not None
            sent.append(harness.llm.requests[-1].messages)
            for item in reply.chat_items:
                recorder.record(item)
        kept = _texts(
            [
                {"content": m.text_content}
                for m in agent.chat_ctx.items
                if isinstance(m, llm.ChatMessage)
            ]
        )
    assert CONTEXT_PREAMBLE not in kept  # excerpts never stay in the agent's history
    return sent, recorder


def _texts(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content")) for m in messages)


async def test_the_turn_gets_the_relevant_chunk_for_that_turn_only(
    defs: Definitions, index: Fts5Index
) -> None:
    resolved = call(defs, agent_overrides={"knowledge_base_ids": [BILLING_KB]})
    requests, recorder = await converse(
        resolved, Retriever(index), [QUESTION, "Can I pay with American Express?"]
    )
    first, second = requests[-2], requests[-1]
    assert ANSWER_TEXT in _texts(first) and CONTEXT_PREAMBLE in _texts(first)
    assert "American Express" not in _texts(first)
    assert "We accept Visa, Mastercard and American Express" in _texts(second)
    assert ANSWER_TEXT not in _texts(second)  # the first turn's excerpts were not kept
    turn = recorder.latency[0]
    assert turn.retrieval_chunks and turn.retrieval_chunks[0] == "pricing#platform-fee"
    assert turn.retrieval_seconds is not None and turn.retrieval_seconds >= 0
    assert turn.retrieval_error is None


async def test_the_agents_own_knowledge_base_is_searched_and_an_override_replaces_it(
    defs: Definitions, index: Fts5Index
) -> None:
    own, _ = await converse(call(defs), Retriever(index), [QUESTION])  # support: help centre
    assert ANSWER_TEXT not in _texts(own[-1])
    assert CONTEXT_PREAMBLE in _texts(own[-1])  # help-centre excerpts instead
    none, recorder = await converse(
        call(defs, agent_overrides={"knowledge_base_ids": []}), Retriever(index), [QUESTION]
    )
    assert CONTEXT_PREAMBLE not in _texts(none[-1])
    assert recorder.latency[0].retrieval_seconds is None  # no knowledge base: no retrieval


async def test_a_failed_retrieval_still_gets_an_answer_and_says_why(
    defs: Definitions, tmp_path: Path
) -> None:
    broken = Retriever(None, unavailable="knowledge index knowledge-x.sqlite is missing")
    requests, recorder = await converse(call(defs), broken, [QUESTION])
    assert requests and CONTEXT_PREAMBLE not in _texts(requests[-1])
    said = [e.text for e in recorder.transcript if e.role == "assistant"]
    assert "It is two cents a minute." in said
    assert recorder.latency[0].retrieval_error == "knowledge index knowledge-x.sqlite is missing"


async def test_each_squad_member_searches_its_own_knowledge_bases(
    defs: Definitions, index: Fts5Index
) -> None:
    from tests.test_squads import squad_call

    resolved = squad_call(defs)
    harness = Harness()
    controls = DetachedControls(retriever=Retriever(index))
    session, _, squad = build_session(
        resolved, WorkerSettings(), vad=None, controls=controls, pipeline_factory=harness.factory
    )
    assert squad is not None
    seen: dict[str, dict[str, Any]] = {}
    for member in ("triage", "billing", "support"):
        agent = squad.member_agent(member)
        async with session:
            await session.start(agent)
            message = llm.ChatMessage(role="user", content=[QUESTION])
            turn_ctx = agent.chat_ctx.copy()
            await agent.on_user_turn_completed(turn_ctx, new_message=message)
            turn_ctx.insert(message)
            request = await agent._knowledge.with_excerpts(turn_ctx)  # what llm_node sends
        seen[member] = {"ctx": _texts([{"content": m.text_content} for m in request.messages()])}
        seen[member].update(message.extra.get("convoi.retrieval") or {})
        session, _, squad = build_session(
            resolved,
            WorkerSettings(),
            vad=None,
            controls=controls,
            pipeline_factory=harness.factory,
        )
        assert squad is not None
    assert "retrieval_chunks" not in seen["triage"]  # triage has no knowledge base
    assert seen["billing"]["retrieval_chunks"][0] == "pricing#platform-fee"
    assert ANSWER_TEXT in seen["billing"]["ctx"]
    assert all(not c.startswith("pricing#") for c in seen["support"]["retrieval_chunks"])
    assert ANSWER_TEXT not in seen["support"]["ctx"]


async def test_a_turn_is_searched_once_however_many_requests_it_makes(
    index: Fts5Index,
) -> None:
    from convoi.agent.knowledge import TurnKnowledge

    retriever, queries = Retriever(index), list[str]()

    async def search(query: str) -> Any:
        queries.append(query)
        return await retriever.retrieve([BILLING_KB], query)

    knowledge = TurnKnowledge(search)
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="You are helpful.")
    ctx.add_message(role="user", content=QUESTION)
    ctx.add_message(role="assistant", content="Let me check.")  # e.g. before a tool result
    early, final = await knowledge.with_excerpts(ctx), await knowledge.with_excerpts(ctx)
    assert (await knowledge.lookup(f" {QUESTION} ")) is not None
    assert queries == [QUESTION]  # the early reply, the real one and the hook: one search
    roles = [m.role for m in final.messages()]
    assert roles == ["system", "user", "system", "assistant"]  # the excerpt follows the turn
    assert ANSWER_TEXT in (final.messages()[2].text_content or "")
    assert [m.text_content for m in early.messages()] == [m.text_content for m in final.messages()]
    assert len(ctx.messages()) == 3  # the context given is never changed
