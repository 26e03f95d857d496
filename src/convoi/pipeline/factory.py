"""Pipeline factory: an effective agent → livekit plugin objects (STT, LLM, TTS).

Pure construction, no network: plugins connect lazily when the session first uses them. Keys and
base URLs come from :class:`~convoi.settings.WorkerSettings`. The VAD is not built here: silero is
loaded once per process in the worker's setup hook and passed to every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livekit.agents import NOT_GIVEN
from livekit.plugins import deepgram, elevenlabs, openai

from convoi.definitions.models import Agent
from convoi.definitions.providers import DeepgramSTT, ElevenLabsTTS, OpenAILLM
from convoi.settings import WorkerSettings

__all__ = [
    "VOICE_ALIASES",
    "Pipeline",
    "PipelineError",
    "build_llm",
    "build_pipeline",
    "build_stt",
    "build_tts",
    "describe",
    "resolve_voice",
]

VOICE_ALIASES: dict[str, str] = {
    "rachel": "21m00Tcm4TlvDq8ikWAM",
    "adam": "pNInz6obpgDQGcFmaJgB",
    "bella": "EXAVITQu4vr4xnAQs5B",
    "josh": "TxGEqnHWrfWFTfGW9XjX",
    "antoni": "ErXwobaYiN019PkySvjV",
    "elli": "MF3mGyEYCl7XYWbV9V6O",
}
"""Friendly names of ElevenLabs premade voices (as in the seed's ``"voice_id": "rachel"``).
Any other value is passed to ElevenLabs as a voice id unchanged."""


class PipelineError(ValueError):
    """The agent cannot be turned into a pipeline (e.g. a provider key is missing)."""


@dataclass(frozen=True)
class Pipeline:
    """The model plugins for one agent."""

    stt: Any
    llm: Any
    tts: Any


def resolve_voice(voice_id: str) -> str:
    """The ElevenLabs voice id for ``voice_id`` (aliases resolved, case-insensitively)."""
    return VOICE_ALIASES.get(voice_id.lower(), voice_id)


def _key(value: Any, variable: str) -> str:
    if value is None or not value.get_secret_value():
        raise PipelineError(f"{variable} is not set: the worker cannot reach this provider")
    return value.get_secret_value()


def build_llm(cfg: OpenAILLM, settings: WorkerSettings) -> openai.LLM:
    """OpenAI chat completions with the agent's model and sampling options."""

    def opt(value: Any) -> Any:
        return NOT_GIVEN if value is None else value

    return openai.LLM(
        model=cfg.model,
        api_key=_key(settings.openai_api_key, "OPENAI_API_KEY"),
        base_url=settings.openai_base_url or NOT_GIVEN,
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
    voice_settings: Any = NOT_GIVEN
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
    """All three plugins for ``agent``. Raises :class:`PipelineError` when a key is missing."""
    return Pipeline(
        stt=build_stt(agent.stt, settings),
        llm=build_llm(agent.llm, settings),
        tts=build_tts(agent.tts, settings),
    )


def describe(agent: Agent, settings: WorkerSettings) -> dict[str, dict[str, Any]]:
    """The provider settings in effect for ``agent``, without secrets (for ``check-call``)."""

    def endpoint(url: str | None, default: str) -> str:
        return url or default

    return {
        "llm": {
            **agent.llm.model_dump(exclude_none=True),
            "endpoint": endpoint(settings.openai_base_url, "https://api.openai.com/v1"),
            "api_key": "set" if settings.openai_api_key else "MISSING (OPENAI_API_KEY)",
        },
        "stt": {
            **agent.stt.model_dump(exclude_none=True),
            "endpoint": endpoint(settings.deepgram_base_url, "wss://api.deepgram.com/v1/listen"),
            "api_key": "set" if settings.deepgram_api_key else "MISSING (DEEPGRAM_API_KEY)",
        },
        "tts": {
            **agent.tts.model_dump(exclude_none=True),
            "resolved_voice_id": resolve_voice(agent.tts.voice_id),
            "endpoint": endpoint(settings.eleven_base_url, "https://api.elevenlabs.io/v1"),
            "api_key": "set" if settings.eleven_api_key else "MISSING (ELEVEN_API_KEY)",
        },
    }
