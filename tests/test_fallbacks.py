"""Provider fallbacks: definitions, prices, the pipeline's adapters and billing to the server.

End to end (emulated providers failing, the caller hearing the fallback or the apology) is in
tests/test_e2e_fallbacks.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import APIConnectionError, llm, stt, tts
from livekit.agents.llm import LLMError
from livekit.agents.metrics import LLMMetrics, TTSMetrics
from livekit.agents.metrics.base import Metadata
from livekit.agents.tts import TTSError
from livekit.agents.voice.events import ErrorEvent
from livekit.plugins import deepgram, elevenlabs, openai
from livekit.rtc import EventEmitter
from pydantic import ValidationError

from convoi.callspec import CallSpecError, resolve_call
from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Agent, Definitions
from convoi.definitions.overrides import merge
from convoi.definitions.pricing import unpriced_models
from convoi.pipeline.factory import (
    CHAIN_RETRY_INTERVAL,
    TTS_ATTEMPT_TIMEOUT,
    build_pipeline,
    serving_model,
    session_connect_options,
)
from convoi.reporting.usage import UsageTracker
from convoi.settings import WorkerSettings
from convoi.worker.apology import APOLOGY_TEXT, APOLOGY_WAV, ProviderFaults, load_apology
from tests.helpers import AGENTS_CONFIG, SUPPORT

FALLBACKS = {
    "llm": [{"model": "gpt-4o"}, {"model": "gpt-4.1-mini"}],
    "stt": [{"model": "nova-2"}],
    "tts": [{"voice_id": "rachel", "model": "eleven_flash_v2_5"}],
}


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return load_definitions(AGENTS_CONFIG).definitions


@pytest.fixture
def agent(defs: Definitions) -> Agent:
    return merge(defs.agents[SUPPORT], {"fallbacks": FALLBACKS}).agent


@pytest.fixture
def settings() -> WorkerSettings:
    return WorkerSettings(OPENAI_API_KEY="k", DEEPGRAM_API_KEY="k", ELEVEN_API_KEY="k")  # type: ignore[call-arg]


# -- definitions and prices -----------------------------------------------------------------


def test_fallbacks_are_full_provider_blocks_in_order(agent: Agent) -> None:
    assert [b.model for b in agent.fallbacks.llm] == ["gpt-4o", "gpt-4.1-mini"]
    assert agent.fallbacks.llm[0].provider == "openai"
    assert agent.fallbacks.stt[0].language == "en-US"  # a block's own defaults
    assert agent.fallbacks.tts[0].model == "eleven_flash_v2_5"


def test_an_agent_has_no_fallbacks_unless_it_says_so(defs: Definitions) -> None:
    fallbacks = defs.agents[SUPPORT].fallbacks
    assert (fallbacks.llm, fallbacks.stt, fallbacks.tts) == ((), (), ())


@pytest.mark.parametrize(
    ("fallbacks", "where"),
    [
        ({"llm": [{"model": "gpt-4o"}] * 4}, "llm"),  # at most three per kind
        ({"llm": [{"modle": "gpt-4o"}]}, "modle"),  # a typo is an error
        ({"stt": [{"provider": "whisper"}]}, "unknown stt provider"),
        ({"tts": [{"model": "eleven_flash_v2_5"}]}, "voice_id"),  # a TTS block needs its voice
        ({"vad": []}, "vad"),
    ],
)
def test_malformed_fallbacks_are_refused(
    defs: Definitions, fallbacks: dict[str, Any], where: str
) -> None:
    data = defs.agents[SUPPORT].model_dump()
    with pytest.raises(ValidationError, match=where):
        Agent.model_validate({**data, "fallbacks": fallbacks})


def test_every_fallback_model_must_be_priced(defs: Definitions, agent: Agent) -> None:
    assert unpriced_models(agent, defs.prices) == []
    unpriced = merge(agent, {"fallbacks": {"llm": [{"model": "gpt-4o"}, {"model": "gpt-9"}]}})
    issues = unpriced_models(unpriced.agent, defs.prices)
    assert [i.field for i in issues] == ["fallbacks.llm[1].model"]
    assert "openai/gpt-9 has no price" in issues[0].problem


def test_a_call_naming_an_unpriced_fallback_is_refused(defs: Definitions) -> None:
    spec = {
        "call_id": "call_fallback0001",
        "type": "web",
        "agent_id": SUPPORT,
        "agent_overrides": {"fallbacks": {"stt": [{"model": "nova-9"}]}},
    }
    with pytest.raises(CallSpecError, match="nova-9"):
        resolve_call(json.dumps(spec), defs)


def test_overriding_one_kind_of_fallbacks_keeps_the_others(agent: Agent) -> None:
    merged = merge(agent, {"fallbacks": {"llm": []}}).agent
    assert merged.fallbacks.llm == ()
    assert merged.fallbacks.stt == agent.fallbacks.stt
    assert merged.fallbacks.tts == agent.fallbacks.tts


# -- the pipeline ---------------------------------------------------------------------------


def test_fallbacks_become_livekit_fallback_adapters_in_order(
    agent: Agent, settings: WorkerSettings
) -> None:
    pipeline = build_pipeline(agent, settings)
    assert isinstance(pipeline.llm, llm.FallbackAdapter)
    assert isinstance(pipeline.stt, stt.FallbackAdapter)
    assert isinstance(pipeline.tts, tts.FallbackAdapter)
    # livekit keeps the chain in private fields; the order is the whole point, so read them
    assert [i.model for i in pipeline.llm._llm_instances] == [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1-mini",
    ]
    assert all(isinstance(i, openai.LLM) for i in pipeline.llm._llm_instances)
    assert [i.model for i in pipeline.stt._stt_instances] == ["nova-3", "nova-2"]
    assert all(isinstance(i, deepgram.STT) for i in pipeline.stt._stt_instances)
    assert [i.model for i in pipeline.tts._tts_instances] == [
        "eleven_turbo_v2_5",
        "eleven_flash_v2_5",
    ]
    assert all(isinstance(i, elevenlabs.TTS) for i in pipeline.tts._tts_instances)
    # a failed provider is skipped, not retried, and a silent LLM is abandoned within seconds
    assert pipeline.llm._max_retry_per_llm == 0
    assert pipeline.llm._attempt_timeout <= 5
    assert pipeline.tts._max_retry_per_tts == 0


def test_without_fallbacks_the_plugins_are_used_as_they_are(
    defs: Definitions, settings: WorkerSettings
) -> None:
    pipeline = build_pipeline(defs.agents[SUPPORT], settings)
    assert isinstance(pipeline.llm, openai.LLM)
    assert isinstance(pipeline.stt, deepgram.STT)
    assert isinstance(pipeline.tts, elevenlabs.TTS)


def test_the_serving_model_is_the_adapters_active_instance(
    agent: Agent, settings: WorkerSettings
) -> None:
    pipeline = build_pipeline(agent, settings)
    assert serving_model(pipeline.stt) == "nova-3"
    pipeline.stt._active_instance = pipeline.stt._stt_instances[1]  # as after a failover
    assert serving_model(pipeline.stt) == "nova-2"
    assert serving_model(object()) is None


def test_the_session_bounds_retries_and_a_silent_tts() -> None:
    options = session_connect_options()
    assert options.llm_conn_options.max_retry == 1
    assert options.llm_conn_options.retry_interval == CHAIN_RETRY_INTERVAL
    assert options.tts_conn_options.max_retry == 1
    assert options.tts_conn_options.timeout == TTS_ATTEMPT_TIMEOUT


# -- billing to the model that served -------------------------------------------------------


def llm_metrics(model: str | None, tokens: int) -> LLMMetrics:
    return LLMMetrics(
        label="x", request_id="r", timestamp=0.0, duration=0.1, ttft=0.1, cancelled=False,
        completion_tokens=tokens, prompt_tokens=tokens, prompt_cached_tokens=0,
        total_tokens=2 * tokens, tokens_per_second=1.0,
        metadata=Metadata(model_name=model, model_provider="api.openai.com"),
    )  # fmt: skip


def tts_metrics(model: str, characters: int) -> TTSMetrics:
    return TTSMetrics(
        label="x", request_id="r", timestamp=0.0, ttfb=0.1, duration=0.1, audio_duration=1.0,
        cancelled=False, characters_count=characters, streamed=True,
        metadata=Metadata(model_name=model, model_provider="elevenlabs"),
    )  # fmt: skip


def test_usage_is_billed_to_the_model_that_served(agent: Agent) -> None:
    usage = UsageTracker({"agent": agent}, lambda: "agent")
    usage.add(llm_metrics("gpt-4o-mini", 10))
    usage.add(llm_metrics("gpt-4o", 20))  # the first fallback answered
    usage.add(llm_metrics(None, 1))  # unlabelled: the primary
    usage.add(llm_metrics("gpt-unknown", 2))  # names no block: the primary
    usage.add(tts_metrics("eleven_flash_v2_5", 42))
    usage.add_stt_audio("agent", 1.5)
    usage.add_stt_audio("agent", 2.0, "nova-2")

    got = {(e.kind, e.provider, e.model): e for e in usage.entries()}
    assert set(got) == {
        ("llm", "openai", "gpt-4o-mini"),
        ("llm", "openai", "gpt-4o"),
        ("tts", "elevenlabs", "eleven_flash_v2_5"),
        ("stt", "deepgram", "nova-3"),
        ("stt", "deepgram", "nova-2"),
    }
    assert got["llm", "openai", "gpt-4o"].output_tokens == 20
    assert got["llm", "openai", "gpt-4o-mini"].output_tokens == 13
    assert got["tts", "elevenlabs", "eleven_flash_v2_5"].characters == 42
    assert got["stt", "deepgram", "nova-2"].audio_seconds == 2.0


# -- the apology ----------------------------------------------------------------------------


def test_the_apology_is_pre_rendered_audio() -> None:
    frames = load_apology()
    seconds = sum(f.duration for f in frames)
    assert 3 < seconds < 12
    assert all(f.num_channels == 1 for f in frames)
    assert max(max(abs(s) for s in f.data) for f in frames) > 1000  # speech, not silence


def test_a_missing_apology_is_no_audio_not_a_crash(tmp_path: Path) -> None:
    assert APOLOGY_WAV.is_file()
    assert load_apology(tmp_path / "missing.wav") == ()


class FakeSession(EventEmitter[str]):
    """What :class:`ProviderFaults` uses of a session: its events and ``say``."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[tuple[str, int]] = []

    def say(self, text: str, *, audio: Any, allow_interruptions: bool) -> Any:
        frames: list[Any] = []

        async def played() -> None:
            async for frame in audio:
                frames.append(frame)
            self.said.append((text, len(frames)))

        task = asyncio.ensure_future(played())
        return SimpleNamespace(wait_for_playout=lambda: asyncio.shield(task))


def error_event(kind: str, *, recoverable: bool) -> ErrorEvent:
    error = APIConnectionError("all failed")
    made = {
        "llm": lambda: LLMError(timestamp=0.0, label="x", error=error, recoverable=recoverable),
        "tts": lambda: TTSError(timestamp=0.0, label="x", error=error, recoverable=recoverable),
    }[kind]()
    return ErrorEvent(error=made, source=None)


async def test_only_an_unrecoverable_error_apologises_then_ends_provider_error() -> None:
    session = FakeSession()
    ended = asyncio.Event()
    requests: list[tuple[str, str | None]] = []

    def end_soon(reason: str, *, detail: str | None = None) -> None:
        requests.append((reason, detail))
        ended.set()

    faults = ProviderFaults(session, load_apology(), end_soon)  # type: ignore[arg-type]
    session.emit("error", error_event("llm", recoverable=True))  # a retry is coming
    assert faults.failed_kind is None
    session.emit("error", error_event("tts", recoverable=False))
    session.emit("error", error_event("llm", recoverable=False))  # already ending: ignored
    await asyncio.wait_for(ended.wait(), 10)

    assert faults.failed_kind == "tts"
    assert session.said == [(APOLOGY_TEXT, len(load_apology()))]  # played in full, first
    assert requests == [("provider_error", "every tts provider failed")]
