"""Local emulators of the three cloud model providers, on one aiohttp port.

The real livekit plugins talk to them unchanged; only ``base_url`` and the API key differ::

    openai.LLM(base_url="http://127.0.0.1:18500/openai/v1", api_key="x")
    deepgram.STT(base_url="http://127.0.0.1:18500/deepgram/v1/listen", api_key="x")
    elevenlabs.TTS(base_url="http://127.0.0.1:18500/elevenlabs/v1", api_key="x")

Routes:

- ``POST /openai/v1/chat/completions`` (SSE stream or JSON), ``GET /openai/v1/models``;
  ``Authorization: Bearer <key>`` required.
- ``GET /deepgram/v1/listen`` (WebSocket live), ``POST /deepgram/v1/listen`` (prerecorded
  WAV); ``Authorization: Token <key>`` required.
- ``GET /elevenlabs/v1/text-to-speech/{voice_id}/multi-stream-input`` (WebSocket),
  ``POST /elevenlabs/v1/text-to-speech/{voice_id}[/stream]``, ``GET /elevenlabs/v1/voices``;
  ``xi-api-key`` required.
- Control: ``GET /_emulator/health``, ``GET /_emulator/requests[?provider=llm|stt|tts]``
  (records in order), ``GET /_emulator/usage`` (token / audio-second / character totals),
  ``POST /_emulator/reset`` (records and cursors), ``GET|POST /_emulator/scenario`` (JSON
  body; loading also resets).

CLI: ``python -m convoi.devstack.emulators --host 127.0.0.1 --port 18500 [--scenario FILE]
[--record FILE]`` prints ``emulators listening on http://127.0.0.1:18500`` when ready.
In-process: ``async with running_emulators(port=0, scenario=...) as emu: emu.openai_base_url``.

Scenario (YAML or JSON; unknown keys are rejected)::

    caller:                 # final transcripts of the STT emulator, one per detected utterance
      - "Hi, I have a question about my bill."
      - "Thanks, that's all."
    caller_repeat: false    # true: start the caller lines over once used up (else: empty finals)
    llm:                    # first matching rule answers; all conditions in `when` must hold
      - when: {last_user_contains: "billing"}        # str or list (any of), case-insensitive
        tool_call: {name: transfer_to_billing, arguments: {reason: "billing question"}}
      - when: {has_tool_result: transfer_to_billing} # tool result after the last user message
        say: "I'm transferring you now."
      - when: {last_user_contains: "bill"}
        say: "Sure, let me help with your bill."
      - when: {turn: 0}     # number of user messages (0 = greeting); also greeting: true|false,
        say: "Hello!"       # always: true, system_contains: "...", context_contains: "..." (what
                            # this turn added, e.g. knowledge excerpts); `max_uses: N` caps a rule
    default_reply: "Okay."
    latency: {stt_final_ms: 0, llm_ttft_ms: 0, llm_chunk_ms: 0, tts_ttfb_ms: 0}
    faults:                 # per provider, 1-based request number since the last reset
      - {provider: llm, on_request: 1, kind: http_500}  # http_500 | http_429 | drop | stall
    stt: {silence_ms: 400, min_speech_ms: 150, window_ms: 20, interim_every_ms: 300}
    tts: {mode: speech, voice: en-us, speed_wpm: 175}   # mode: speech (espeak-ng) | tone

A tool-call rule never fires again once a result for that tool follows the last user message.
Token counts: ``prompt_tokens`` = whitespace words of all message contents;
``completion_tokens`` = words of the answer text (+ 1 + words of the arguments JSON for a tool
call). STT/TTS/LLM "requests" for faults: chat completions; STT connections and HTTP
transcriptions; TTS contexts and HTTP syntheses. See :mod:`.scenario` for fault details.

API keys are never logged or recorded.
"""

from .app import RunningEmulators, create_app, running_emulators
from .scenario import Scenario, load_scenario
from .state import EmulatorState

__all__ = [
    "EmulatorState",
    "RunningEmulators",
    "Scenario",
    "create_app",
    "load_scenario",
    "running_emulators",
]
