"""What a call's providers will be, for humans (``check-call``): no plugin imports, no secrets."""

from __future__ import annotations

from typing import Any

from convoi.definitions.models import Agent
from convoi.pipeline.voices import resolve_voice
from convoi.settings import WorkerSettings

__all__ = ["describe"]


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
