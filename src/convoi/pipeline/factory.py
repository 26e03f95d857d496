"""Pipeline factory: an effective agent → livekit plugin objects (STT, LLM, TTS).

Pure construction, no network: plugins connect lazily when the session first uses them. Keys and
base URLs come from :class:`~convoi.settings.WorkerSettings`. The VAD is not built here: silero is
loaded once per process in the worker's setup hook and passed to every session.

An agent with ``fallbacks`` gets livekit's ``FallbackAdapter`` per kind, over the primary plugin and
its fallbacks in order, with bounded attempts (:data:`LLM_ATTEMPT_TIMEOUT` ...): a provider that
errors, drops its connection or stalls is abandoned within seconds and the next one answers; the
adapter probes the failed one in the background and returns to it once it recovers. When every
instance has failed, the adapter's error is unrecoverable (see :mod:`convoi.worker.apology`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2 as httpx  # the HTTP client the openai SDK (and livekit's plugin) use
import openai as openai_sdk
from livekit.agents import NOT_GIVEN, APIConnectOptions, NotGiven, llm, stt, tts
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.plugins import deepgram, elevenlabs, openai
from pydantic import SecretStr

from convoi.definitions.models import Agent
from convoi.definitions.providers import DeepgramSTT, ElevenLabsTTS, OpenAILLM
from convoi.pipeline.tls import shared_tls_context
from convoi.pipeline.voices import resolve_voice
from convoi.settings import WorkerSettings

__all__ = [
    "INPUT_SAMPLE_RATE",
    "LLM_ATTEMPT_TIMEOUT",
    "STT_ATTEMPT_TIMEOUT",
    "TTS_ATTEMPT_TIMEOUT",
    "Pipeline",
    "PipelineError",
    "build_llm",
    "build_pipeline",
    "build_stt",
    "build_tts",
    "serving_model",
    "session_connect_options",
]

LLM_ATTEMPT_TIMEOUT = 4.0
"""Seconds an LLM of a fallback chain has to start answering before the next one is asked."""
INPUT_SAMPLE_RATE = 16000
"""The rate the caller's audio is taken at: Deepgram's (``sample_rate``, sent as is) and silero
VAD's. livekit's RoomIO default is 24 kHz, which each of them resampled again in Python, frame by
frame; at 16 kHz the room's audio stream does the one resampling natively."""

STT_ATTEMPT_TIMEOUT = 4.0
"""Seconds an STT of a fallback chain has per (non-streaming) attempt."""
TTS_ATTEMPT_TIMEOUT = 5.0
"""Seconds a TTS waits for audio (first audio of a sentence, or the next chunk) before giving up:
the next TTS of the chain is asked (livekit's TTS adapter has no attempt timeout of its own, the
plugin's connection timeout bounds it, see :func:`session_connect_options`)."""
CHAIN_RETRY_INTERVAL = 1.0
"""Seconds before a whole chain (or a lone plugin) that failed is tried once more."""


def session_connect_options() -> SessionConnectOptions:
    """The session's connection options: one retry of a failed LLM/TTS (or chain of them) after
    :data:`CHAIN_RETRY_INTERVAL`, a TTS that stays silent for :data:`TTS_ATTEMPT_TIMEOUT` fails
    (livekit's defaults: three retries two seconds apart, ten seconds of TTS silence)."""
    once = APIConnectOptions(max_retry=1, retry_interval=CHAIN_RETRY_INTERVAL)
    return SessionConnectOptions(
        llm_conn_options=once,
        tts_conn_options=dataclasses.replace(once, timeout=TTS_ATTEMPT_TIMEOUT),
    )


class PipelineError(ValueError):
    """The agent cannot be turned into a pipeline (e.g. a provider key is missing)."""


@dataclass(frozen=True)
class Pipeline:
    """The model plugins for one agent: the plugins themselves, or a ``FallbackAdapter`` over
    the primary plugin and the agent's fallbacks."""

    stt: stt.STT[Any]
    llm: llm.LLM[Any]
    tts: tts.TTS[Any]


_T = TypeVar("_T")


def _key(value: SecretStr | None, variable: str) -> str:
    if value is None or not value.get_secret_value():
        raise PipelineError(f"{variable} is not set: the worker cannot reach this provider")
    return value.get_secret_value()


class _OwnClientLLM(openai.LLM):
    """livekit's OpenAI LLM over a client we built (the process's shared TLS context), closed
    with it as the plugin closes the clients it builds itself."""

    def __init__(self, *, client: openai_sdk.AsyncClient, **kwargs: Any) -> None:
        super().__init__(client=client, **kwargs)
        self._owned_client = client

    async def aclose(self) -> None:
        await super().aclose()
        await self._owned_client.close()


def _openai_client(settings: WorkerSettings) -> openai_sdk.AsyncClient:
    """The client livekit's plugin would build (same timeouts, limits and no SDK retries), over
    the process's shared TLS context instead of a new one per LLM (:mod:`convoi.pipeline.tls`)."""
    return openai_sdk.AsyncClient(
        api_key=_key(settings.openai_api_key, "OPENAI_API_KEY"),
        base_url=settings.openai_base_url or None,
        max_retries=0,
        http_client=httpx.AsyncClient(
            verify=shared_tls_context(),
            timeout=httpx.Timeout(connect=15.0, read=5.0, write=5.0, pool=5.0),
            follow_redirects=True,
            limits=httpx.Limits(
                max_connections=50, max_keepalive_connections=50, keepalive_expiry=120
            ),
        ),
    )


def build_llm(cfg: OpenAILLM, settings: WorkerSettings) -> openai.LLM:
    """OpenAI chat completions with the agent's model and sampling options."""

    def opt(value: _T | None) -> _T | NotGiven:
        return NOT_GIVEN if value is None else value

    return _OwnClientLLM(
        client=_openai_client(settings),
        model=cfg.model,
        temperature=opt(cfg.temperature),
        top_p=opt(cfg.top_p),
        max_completion_tokens=opt(cfg.max_completion_tokens),
        parallel_tool_calls=opt(cfg.parallel_tool_calls),
    )


def build_stt(cfg: DeepgramSTT, settings: WorkerSettings) -> deepgram.STT:
    """Deepgram live transcription with the agent's model and language."""
    kwargs: dict[str, Any] = {}
    if settings.deepgram_base_url:
        kwargs["base_url"] = settings.deepgram_base_url
    if cfg.keyterms:
        kwargs["keyterm"] = list(cfg.keyterms)
    return deepgram.STT(
        sample_rate=INPUT_SAMPLE_RATE,
        model=cfg.model,
        language=cfg.language,
        endpointing_ms=cfg.endpointing_ms,
        punctuate=cfg.punctuate,
        smart_format=cfg.smart_format,
        filler_words=cfg.filler_words,
        api_key=_key(settings.deepgram_api_key, "DEEPGRAM_API_KEY"),
        **kwargs,
    )


def build_tts(cfg: ElevenLabsTTS, settings: WorkerSettings) -> elevenlabs.TTS:
    """ElevenLabs streaming synthesis with the agent's voice, model and voice settings."""
    voice_settings: elevenlabs.VoiceSettings | NotGiven = NOT_GIVEN
    tuned = {
        "stability": cfg.stability,
        "similarity_boost": cfg.similarity_boost,
        "style": cfg.style,
        "use_speaker_boost": cfg.use_speaker_boost,
        "speed": cfg.speed,
    }
    if any(v is not None for v in tuned.values()):
        voice_settings = elevenlabs.VoiceSettings(
            stability=cfg.stability if cfg.stability is not None else 0.5,
            similarity_boost=cfg.similarity_boost if cfg.similarity_boost is not None else 0.75,
            style=cfg.style if cfg.style is not None else NOT_GIVEN,
            use_speaker_boost=cfg.use_speaker_boost
            if cfg.use_speaker_boost is not None
            else NOT_GIVEN,
            speed=cfg.speed if cfg.speed is not None else NOT_GIVEN,
        )
    return elevenlabs.TTS(
        voice_id=resolve_voice(cfg.voice_id),
        model=cfg.model,
        voice_settings=voice_settings,
        encoding=cfg.encoding,
        language=cfg.language or NOT_GIVEN,
        api_key=_key(settings.eleven_api_key, "ELEVEN_API_KEY"),
        base_url=settings.eleven_base_url or NOT_GIVEN,
    )


def build_pipeline(agent: Agent, settings: WorkerSettings) -> Pipeline:
    """All three plugins for ``agent`` (fallback chains where it has fallbacks). Raises
    :class:`PipelineError` when a key is missing."""
    stts: list[stt.STT[Any]] = [build_stt(c, settings) for c in (agent.stt, *agent.fallbacks.stt)]
    llms: list[llm.LLM[Any]] = [build_llm(c, settings) for c in (agent.llm, *agent.fallbacks.llm)]
    ttss: list[tts.TTS[Any]] = [build_tts(c, settings) for c in (agent.tts, *agent.fallbacks.tts)]
    return Pipeline(
        stt=stts[0]
        if len(stts) == 1
        else stt.FallbackAdapter(stts, attempt_timeout=STT_ATTEMPT_TIMEOUT, max_retry_per_stt=0),
        llm=llms[0]
        if len(llms) == 1
        else llm.FallbackAdapter(llms, attempt_timeout=LLM_ATTEMPT_TIMEOUT, max_retry_per_llm=0),
        tts=ttss[0] if len(ttss) == 1 else tts.FallbackAdapter(ttss, max_retry_per_tts=0),
    )


def serving_model(plugin: object) -> str | None:
    """The model that serves ``plugin``'s requests now: its own, or for a ``FallbackAdapter``
    the model of the instance that answered last (None for anything else)."""
    if isinstance(plugin, stt.STT | llm.LLM | tts.TTS):
        return plugin.metrics_metadata.get("model_name")
    return None
