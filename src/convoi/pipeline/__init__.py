"""Pipeline building: effective agent → livekit STT / LLM / TTS plugin objects."""

from convoi.pipeline.factory import (
    VOICE_ALIASES,
    Pipeline,
    PipelineError,
    build_llm,
    build_pipeline,
    build_stt,
    build_tts,
    describe,
    resolve_voice,
)

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
