"""Pipeline building: effective agent → livekit STT / LLM / TTS plugin objects.

The plugin-building names are imported lazily, so tools that only describe a pipeline
(``check-config``, ``check-call``) do not pay for importing livekit-agents and its plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convoi.pipeline.describe import describe
from convoi.pipeline.voices import VOICE_ALIASES, resolve_voice

if TYPE_CHECKING:
    from convoi.pipeline.factory import (
        Pipeline,
        PipelineError,
        build_llm,
        build_pipeline,
        build_stt,
        build_tts,
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

_LAZY = {"Pipeline", "PipelineError", "build_llm", "build_pipeline", "build_stt", "build_tts"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from convoi.pipeline import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'convoi.pipeline' has no attribute {name!r}")
