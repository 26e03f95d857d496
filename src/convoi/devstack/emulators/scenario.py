"""Scenario model: the script that drives the provider emulators.

A scenario is a YAML or JSON document validated by :class:`Scenario` (unknown keys are
rejected everywhere). See the package docstring (``convoi.devstack.emulators``) for the full
schema with an example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from convoi.devstack.audio import SPEECH_RMS_THRESHOLD

__all__ = [
    "Fault",
    "FaultKind",
    "Latency",
    "LlmRule",
    "Provider",
    "Scenario",
    "SttSettings",
    "ToolCallSpec",
    "TtsSettings",
    "When",
    "load_scenario",
]

Provider = Literal["llm", "stt", "tts"]
FaultKind = Literal["http_500", "http_429", "drop", "stall"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class When(_Strict):
    """Conditions of an LLM rule; every condition given must hold (an empty ``when`` always
    matches).

    - ``always``: true matches anything (false never matches).
    - ``last_user_contains``: case-insensitive substring of the last user message; a list
      matches when any entry does. Never matches before the first user message.
    - ``turn``: number of user messages in the request (0 = the greeting request).
    - ``greeting``: true matches only when there is no user message yet, false only after.
    - ``system_contains``: case-insensitive substring of any system/developer message.
    - ``has_tool_result``: a tool result for a call of this tool name appears after the last
      user message.
    - ``context_contains``: case-insensitive substring of any message after the last assistant
      message before the last user message, i.e. of what this turn added (the user's words and
      context such as knowledge-base excerpts); a list matches when every entry is there.
    """

    always: bool | None = None
    last_user_contains: str | list[str] | None = None
    turn: int | None = Field(default=None, ge=0)
    greeting: bool | None = None
    system_contains: str | None = None
    has_tool_result: str | None = None
    context_contains: str | list[str] | None = None


class ToolCallSpec(_Strict):
    """A function call the emulated LLM makes."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class LlmRule(_Strict):
    """One scripted LLM answer: text (``say``), a tool call, or text followed by a tool call.

    ``max_uses`` limits how often the rule may fire (per scenario load / reset).
    """

    when: When = Field(default_factory=When)
    say: str | None = None
    tool_call: ToolCallSpec | None = None
    max_uses: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _needs_answer(self) -> LlmRule:
        if self.say is None and self.tool_call is None:
            raise ValueError("an llm rule needs `say`, `tool_call` or both")
        return self


class Latency(_Strict):
    """Artificial delays, in milliseconds."""

    stt_final_ms: int = Field(default=0, ge=0)
    """Delay before a final transcript is sent, after end of speech was detected."""
    llm_ttft_ms: int = Field(default=0, ge=0)
    """Delay before the response headers / first chunk of a chat completion."""
    llm_chunk_ms: int = Field(default=0, ge=0)
    """Delay between streamed chat-completion chunks."""
    tts_ttfb_ms: int = Field(default=0, ge=0)
    """Delay before the first audio of each TTS context / HTTP request."""


class Fault(_Strict):
    """An injected failure for the ``on_request``-th request of ``provider`` (1-based, counted
    since the last reset/scenario load).

    Requests are: LLM chat completions; STT WebSocket connections and HTTP transcriptions; TTS
    WebSocket contexts and HTTP syntheses.

    - ``http_500`` / ``http_429``: HTTP error (STT: the WebSocket handshake is rejected; TTS
      context: an ``error`` message for that context).
    - ``drop``: LLM: the stream is cut after half the content, without ``[DONE]``; STT: the
      socket is closed with code 1011 after ``drop_after_ms`` of audio; TTS: the socket is
      closed with code 1011 after the context's first audio chunk.
    - ``stall``: never answer (LLM: until the client gives up; STT: no results and no close;
      TTS: no audio, no ``isFinal`` for the context). ``stall_ms`` bounds the LLM stall, after
      which the request is answered normally.
    """

    provider: Provider
    on_request: int = Field(ge=1)
    kind: FaultKind
    stall_ms: int | None = Field(default=None, ge=0)
    drop_after_ms: int = Field(default=500, ge=0)


class SttSettings(_Strict):
    """Energy-based endpointing of the Deepgram emulator."""

    silence_ms: int = Field(default=400, ge=20)
    """Quiet time after speech that ends the utterance."""
    min_speech_ms: int = Field(default=150, ge=0)
    """Energy shorter than this is a blip and ignored."""
    window_ms: int = Field(default=20, ge=5, le=100)
    """RMS analysis window."""
    interim_every_ms: int = Field(default=300, ge=50)
    """Audio time between interim results while speech goes on."""
    threshold: float = Field(default=SPEECH_RMS_THRESHOLD, gt=0)
    """RMS (int16 units) above which a window counts as speech."""


class TtsSettings(_Strict):
    """Audio the ElevenLabs emulator renders."""

    mode: Literal["speech", "tone"] = "speech"
    voice: str = "en-us"
    speed_wpm: int = Field(default=175, ge=80, le=450)


class Scenario(_Strict):
    """The full scenario document."""

    caller: list[str] = Field(default_factory=list)
    """What the caller says, in order: the STT emulator's final transcripts."""
    caller_repeat: bool = False
    """Once ``caller`` is used up, start again from its first line (else transcripts are empty,
    and an agent hears nothing). ``convoi-devstack up``'s default scenario repeats, so every call
    made against a long-running devstack is answered."""
    llm: list[LlmRule] = Field(default_factory=list)
    """LLM rules; the first matching one answers."""
    default_reply: str = "Okay."
    """Answer when no rule matches."""
    latency: Latency = Field(default_factory=Latency)
    faults: list[Fault] = Field(default_factory=list)
    stt: SttSettings = Field(default_factory=SttSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``.json`` is parsed as JSON, anything else as YAML)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    return Scenario.model_validate(data or {})
