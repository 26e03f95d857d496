"""Provider blocks of an agent: ``llm``, ``stt`` and ``tts``.

Each block is a pydantic model per provider, selected by its ``provider`` field; unknown providers and
unknown option keys are errors (``extra="forbid"``), so a typo fails at ``check-config`` and at
dispatch instead of being silently ignored. Only providers the worker can build are listed here.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

from convoi.definitions.voices import voice_problem

__all__ = [
    "LLM_PROVIDERS",
    "STT_PROVIDERS",
    "TTS_PROVIDERS",
    "DeepgramSTT",
    "ElevenLabsTTS",
    "Fallbacks",
    "LLMConfig",
    "OpenAILLM",
    "STTConfig",
    "TTSConfig",
]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""

    @field_validator("provider", mode="before", check_fields=False)
    @classmethod
    def _known_provider(cls, value: object) -> object:
        expected = cls.model_fields["provider"].default
        if value != expected:
            known = ", ".join(_SUPPORTED[cls.kind])
            raise ValueError(f"unknown {cls.kind} provider {value!r}; supported: {known}")
        return value


class OpenAILLM(_Block):
    """OpenAI chat completions (``livekit.plugins.openai.LLM``)."""

    kind: ClassVar[str] = "llm"
    provider: Literal["openai"] = "openai"
    model: str = Field("gpt-4o-mini", min_length=1, max_length=128)
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(None, gt=0.0, le=1.0)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=32_768)
    parallel_tool_calls: StrictBool | None = None


class DeepgramSTT(_Block):
    """Deepgram live transcription (``livekit.plugins.deepgram.STT``)."""

    kind: ClassVar[str] = "stt"
    provider: Literal["deepgram"] = "deepgram"
    model: str = Field("nova-3", min_length=1, max_length=128)
    language: str = Field(
        "en-US", min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$|^multi$"
    )
    endpointing_ms: StrictInt = Field(25, ge=0, le=10_000)
    punctuate: StrictBool = True
    smart_format: StrictBool = False
    filler_words: StrictBool = True
    keyterms: tuple[str, ...] = Field((), max_length=100)


class ElevenLabsTTS(_Block):
    """ElevenLabs streaming synthesis (``livekit.plugins.elevenlabs.TTS``)."""

    kind: ClassVar[str] = "tts"
    provider: Literal["elevenlabs"] = "elevenlabs"
    voice_id: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    model: str = Field("eleven_turbo_v2_5", min_length=1, max_length=128)
    speed: StrictFloat | None = Field(None, ge=0.7, le=1.2)
    stability: StrictFloat | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: StrictFloat | None = Field(None, ge=0.0, le=1.0)
    style: StrictFloat | None = Field(None, ge=0.0, le=1.0)
    use_speaker_boost: StrictBool | None = None
    language: str | None = Field(None, min_length=2, max_length=8)
    encoding: Literal[
        "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "mp3_22050_32", "mp3_44100_128"
    ] = "pcm_24000"

    @field_validator("voice_id")
    @classmethod
    def _resolvable_voice(cls, value: str) -> str:
        """A voice name that is neither an alias nor a voice id is refused, not sent."""
        problem = voice_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


LLMConfig = OpenAILLM
"""Union of the LLM provider blocks (one provider today; add a block and list it below)."""
STTConfig = DeepgramSTT
TTSConfig = ElevenLabsTTS

MAX_FALLBACKS = 3
"""Fallbacks per kind: each one is tried only after the ones before it failed."""


class Fallbacks(BaseModel):
    """Ordered fallbacks for an agent's ``llm``, ``stt`` and ``tts``.

    Each entry is a complete provider block (the same fields as the primary block), tried in
    order when the primary (and every fallback before it) fails: an HTTP error, a dropped
    connection or no answer within the attempt timeout (livekit's ``FallbackAdapter``). Each
    fallback model must be priced like the primary; usage is billed to the model that served.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    llm: tuple[LLMConfig, ...] = Field((), max_length=MAX_FALLBACKS)
    stt: tuple[STTConfig, ...] = Field((), max_length=MAX_FALLBACKS)
    tts: tuple[TTSConfig, ...] = Field((), max_length=MAX_FALLBACKS)


LLM_PROVIDERS: dict[str, type[_Block]] = {"openai": OpenAILLM}
STT_PROVIDERS: dict[str, type[_Block]] = {"deepgram": DeepgramSTT}
TTS_PROVIDERS: dict[str, type[_Block]] = {"elevenlabs": ElevenLabsTTS}
_SUPPORTED = {"llm": LLM_PROVIDERS, "stt": STT_PROVIDERS, "tts": TTS_PROVIDERS}
