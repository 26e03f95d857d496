"""Pipeline factory: an effective agent → livekit plugin objects (STT, LLM, TTS).

Pure construction, no network: plugins connect lazily when the session first uses them. Keys and
base URLs come from :class:`~convoi.settings.WorkerSettings`. The VAD is not built here: silero is
loaded once per process in the worker's setup hook and passed to every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from livekit.agents import NOT_GIVEN, NotGiven
from livekit.plugins import deepgram, elevenlabs, openai
from pydantic import SecretStr

from convoi.definitions.models import Agent
from convoi.definitions.providers import DeepgramSTT, ElevenLabsTTS, OpenAILLM
from convoi.pipeline.voices import resolve_voice
from convoi.settings import WorkerSettings

__all__ = ["Pipeline", "PipelineError", "build_llm", "build_pipeline", "build_stt", "build_tts"]


class PipelineError(ValueError):
    """The agent cannot be turned into a pipeline (e.g. a provider key is missing)."""


@dataclass(frozen=True)
class Pipeline:
    """The model plugins for one agent."""

    stt: deepgram.STT
    llm: openai.LLM
    tts: elevenlabs.TTS


_T = TypeVar("_T")


def _key(value: SecretStr | None, variable: str) -> str:
    if value is None or not value.get_secret_value():
        raise PipelineError(f"{variable} is not set: the worker cannot reach this provider")
    return value.get_secret_value()


def build_llm(cfg: OpenAILLM, settings: WorkerSettings) -> openai.LLM:
    """OpenAI chat completions with the agent's model and sampling options."""

    def opt(value: _T | None) -> _T | NotGiven:
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
    """All three plugins for ``agent``. Raises :class:`PipelineError` when a key is missing."""
    return Pipeline(
        stt=build_stt(agent.stt, settings),
        llm=build_llm(agent.llm, settings),
        tts=build_tts(agent.tts, settings),
    )
