"""Text-mode AgentSession tests (no room, no server): what the agent says and with what settings.

The session is the worker's own (``build_session``); only the model plugins are replaced by a
scripted fake LLM built from the effective agent's settings, through the pipeline-factory seam.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit.agents import AgentSession, llm
from livekit.plugins import openai

from convoi.agent import OPENER_INSTRUCTIONS
from convoi.callspec import ResolvedCall, resolve_call
from convoi.definitions.models import Agent, Definitions
from convoi.pipeline import Pipeline, build_pipeline
from convoi.settings import WorkerSettings
from convoi.worker.session import build_session
from tests.fake_llm import Reply, ScriptedLLM
from tests.helpers import SUPPORT

TIMEOUT = 30.0


def web_call(defs: Definitions, **fields: Any) -> ResolvedCall:
    spec = {"call_id": "call_text0001", "type": "web", "agent_id": SUPPORT, **fields}
    return resolve_call(spec, defs)


class Harness:
    """Builds the worker's session with a scripted LLM made from the effective agent."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.llm: ScriptedLLM | None = None

    def factory(self, agent: Agent, settings: WorkerSettings) -> Pipeline:
        self.llm = ScriptedLLM(
            self.replies, model=agent.llm.model, temperature=agent.llm.temperature
        )
        return Pipeline(stt=None, llm=self.llm, tts=None)


async def first_assistant_message(session: AgentSession) -> llm.ChatMessage:
    """Wait (event-driven) for the agent's first spoken message."""
    done: asyncio.Future[llm.ChatMessage] = asyncio.get_running_loop().create_future()

    def on_item(ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role == "assistant" and not done.done():
            done.set_result(item)

    session.on("conversation_item_added", on_item)
    for item in session.history.items:
        if isinstance(item, llm.ChatMessage) and item.role == "assistant":
            return item
    return await asyncio.wait_for(done, TIMEOUT)


async def test_greeting_is_the_rendered_first_message(defs: Definitions) -> None:
    harness = Harness([Reply("Sure.")])
    session, agent, _ = build_session(
        web_call(defs, participant_name="Ahmed"),
        WorkerSettings(),
        vad=None,
        pipeline_factory=harness.factory,
    )
    async with session:
        await session.start(agent)
        greeting = await first_assistant_message(session)
    assert (
        greeting.text_content
        == "Hi Ahmed, thanks for calling Convoi support. How can I help you today?"
    )
    assert harness.llm is not None and harness.llm.requests == []  # spoken, not generated


async def test_first_message_override_is_spoken_verbatim_with_placeholders_filled(
    defs: Definitions,
) -> None:
    harness = Harness([])
    call = web_call(defs, agent_overrides={"first_message": "<name>, welcome back!"})
    session, agent, _ = build_session(
        call, WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    async with session:
        await session.start(agent)
        greeting = await first_assistant_message(session)
    assert greeting.text_content == "there, welcome back!"


async def test_without_first_message_the_llm_generates_the_opener(defs: Definitions) -> None:
    harness = Harness([Reply("Hello from Convoi, what can I do for you?")])
    defs_no_greeting = defs.model_copy(
        update={
            "agents": {
                **defs.agents,
                SUPPORT: defs.agents[SUPPORT].model_copy(update={"first_message": None}),
            }
        }
    )
    session, agent, _ = build_session(
        web_call(defs_no_greeting), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    async with session:
        await session.start(agent)
        opener = await first_assistant_message(session)
    assert opener.text_content == "Hello from Convoi, what can I do for you?"
    assert harness.llm is not None
    system = [m["content"] for m in harness.llm.requests[0].messages if m["role"] == "system"]
    assert any(OPENER_INSTRUCTIONS in s for s in system)


async def test_system_prompt_model_and_temperature_come_from_the_overrides(
    defs: Definitions,
) -> None:
    harness = Harness([Reply("Your bill is ten dollars.", when="bill")])
    call = web_call(
        defs,
        participant_name="Sara",
        agent_overrides={
            "system_prompt": "You are a concise support agent for {name}.",
            "llm": {"model": "gpt-4.1-mini", "temperature": 0.9},
        },
    )
    session, agent, _ = build_session(
        call, WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    async with session:
        await session.start(agent)
        await first_assistant_message(session)
        result = await session.run(user_input="How much is my bill?")
    result.expect.next_event().is_message(role="assistant")
    assert harness.llm is not None
    request = harness.llm.requests[-1]
    assert request.messages[0] == {
        "role": "system",
        "content": "You are a concise support agent for Sara.",
    }
    assert request.messages[-1] == {"role": "user", "content": "How much is my bill?"}
    assert (request.model, request.temperature) == ("gpt-4.1-mini", 0.9)
    assert session.current_agent.llm is harness.llm
    assert "end_call" in request.tools


def test_real_openai_plugin_gets_the_overridden_model_and_temperature(defs: Definitions) -> None:
    call = web_call(
        defs,
        agent_overrides={
            "llm": {"model": "gpt-4o", "temperature": 0.1},
            "tts": {"voice_id": "AbCdEfGhIjKlMnOpQrSt"},
        },
    )
    settings = WorkerSettings(OPENAI_API_KEY="k", DEEPGRAM_API_KEY="k", ELEVEN_API_KEY="k")
    pipeline = build_pipeline(call.start_agent.agent, settings)
    assert isinstance(pipeline.llm, openai.LLM)
    assert pipeline.llm.model == "gpt-4o"
    assert pipeline.llm._opts.temperature == 0.1
    assert pipeline.tts._opts.voice_id == "AbCdEfGhIjKlMnOpQrSt"


async def test_end_call_tool_ends_the_session_as_agent_hangup(defs: Definitions) -> None:
    harness = Harness([Reply(when="bye", tool="end_call"), Reply("Goodbye!")])
    session, agent, _ = build_session(
        web_call(defs), WorkerSettings(), vad=None, pipeline_factory=harness.factory
    )
    closed = asyncio.get_running_loop().create_future()
    session.on("close", lambda ev: closed.done() or closed.set_result(ev))
    async with session:
        await session.start(agent)
        await first_assistant_message(session)
        session.run(user_input="Thanks, bye")
        await asyncio.wait_for(closed, TIMEOUT)
    assert session.userdata.hung_up  # the agent asked the call to hang up (agent_hangup)


async def test_voice_sessions_use_only_local_turn_and_interruption_detection(
    defs: Definitions,
) -> None:
    """LiveKit Cloud's turn detector and adaptive interruption model are never used (offline):
    the end-of-turn model is livekit's local one, or VAD alone."""
    from livekit.agents import inference

    harness = Harness([])
    session, _, _ = build_session(
        web_call(defs), WorkerSettings(), vad=object(), pipeline_factory=harness.factory
    )
    assert session.interruption_detection == "vad"
    assert isinstance(session.turn_detection, inference.TurnDetector)
    assert session.turn_detection.model == "turn-detector-v1-mini"
    vad_only = WorkerSettings(CONVOI_TURN_DETECTION="vad")  # type: ignore[call-arg]
    session, _, _ = build_session(
        web_call(defs), vad_only, vad=object(), pipeline_factory=harness.factory
    )
    assert session.turn_detection == "vad"


async def test_the_turn_model_and_endpointing_delays_come_from_the_settings(
    defs: Definitions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CONVOI_TURN_DETECTION=model`` (the default): livekit's local audio end-of-turn model
    (never the cloud one), held at most 1.2 s unless the settings say otherwise; ``vad``:
    livekit's and silero's own delays."""
    from livekit.agents import inference

    from convoi.worker.session import MODEL_MAX_ENDPOINTING_DELAY, turn_handling, vad_min_silence

    default = turn_handling(WorkerSettings(), with_vad=True)
    assert default["endpointing"] == {"max_delay": MODEL_MAX_ENDPOINTING_DELAY}
    assert vad_min_silence(WorkerSettings()) == 0.3
    assert turn_handling(WorkerSettings(), with_vad=False)["turn_detection"] is None
    monkeypatch.setenv("CONVOI_TURN_DETECTION", "vad")
    assert "endpointing" not in turn_handling(WorkerSettings(), with_vad=True)  # livekit's
    assert vad_min_silence(WorkerSettings()) is None  # silero's
    monkeypatch.setenv("CONVOI_TURN_DETECTION", "model")
    monkeypatch.setenv("CONVOI_MIN_ENDPOINTING_DELAY", "0.2")
    monkeypatch.setenv("CONVOI_MAX_ENDPOINTING_DELAY", "1.5")
    options = turn_handling(WorkerSettings(), with_vad=True)
    detector = options["turn_detection"]
    assert isinstance(detector, inference.TurnDetector)
    assert detector.model == "turn-detector-v1-mini"  # local, whatever the mode
    assert options["endpointing"] == {"min_delay": 0.2, "max_delay": 1.5}
    harness = Harness([])
    session, _, _ = build_session(
        web_call(defs), WorkerSettings(), vad=object(), pipeline_factory=harness.factory
    )
    assert isinstance(session.turn_detection, inference.TurnDetector)


async def test_an_early_reply_is_synthesised_early_unless_turned_off(defs: Definitions) -> None:
    """livekit's preemptive generation runs the TTS too (its audio is ready when the turn ends)."""
    harness = Harness([])
    session, _, _ = build_session(
        web_call(defs), WorkerSettings(), vad=object(), pipeline_factory=harness.factory
    )
    assert session.options.preemptive_generation["enabled"] is True
    assert session.options.preemptive_generation["preemptive_tts"] is True
    off = WorkerSettings.model_validate({"CONVOI_PREEMPTIVE_TTS": "false"})
    session, _, _ = build_session(
        web_call(defs), off, vad=object(), pipeline_factory=harness.factory
    )
    assert session.options.preemptive_generation["preemptive_tts"] is False
