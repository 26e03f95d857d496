"""Process settings, read from the environment (and an optional ``.env`` file).

Names follow livekit-agents (``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``) and each
provider's own SDK (``OPENAI_API_KEY``, ``DEEPGRAM_API_KEY``, ``ELEVEN_API_KEY``). The ``*_BASE_URL``
variables point the real plugins at another endpoint, such as the devstack's emulators. Every
variable is listed in the README; ``tests/test_settings.py`` keeps that list in sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    """Everything the worker reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    livekit_url: str = Field("ws://127.0.0.1:7880", alias="LIVEKIT_URL")
    """WebSocket URL of the LiveKit server (or LiveKit Cloud project)."""
    livekit_api_key: str = Field("devkey", alias="LIVEKIT_API_KEY")
    livekit_api_secret: SecretStr = Field(SecretStr("secret"), alias="LIVEKIT_API_SECRET")

    agent_name: str = Field("convoi", alias="CONVOI_AGENT_NAME", min_length=1)
    """The name this worker registers for explicit dispatch (CreateAgentDispatch agent_name)."""
    config_dir: Path = Field(Path("agents_config"), alias="CONVOI_CONFIG_DIR")
    """Folder of agent, squad, phone number, knowledge base and price definitions."""
    log_format: Literal["json", "text"] = Field("json", alias="CONVOI_LOG_FORMAT")
    """``start`` logs JSON lines by default; ``dev`` and ``console`` log text."""
    health_port: int = Field(8081, alias="CONVOI_HEALTH_PORT", ge=0, le=65535)
    """Port of the worker's HTTP health endpoint (``GET /``) in ``start`` mode; 0 picks a free one."""
    num_idle_processes: int | None = Field(None, alias="CONVOI_NUM_IDLE_PROCESSES", ge=0, le=32)
    """Job processes kept warm while the worker is quiet; default is livekit-agents' (one per
    CPU). After a burst of calls the pool grows to the burst's size (``CONVOI_MAX_IDLE_PROCESSES``)
    for ten minutes: see ``convoi.worker.warm_pool``."""
    max_idle_processes: int | None = Field(None, alias="CONVOI_MAX_IDLE_PROCESSES", ge=0, le=64)
    """At most this many job processes kept warm after a burst of calls (≈ 35 MB each); default
    four per CPU, within ``CONVOI_MAX_CALLS``. Set it to ``CONVOI_NUM_IDLE_PROCESSES`` for a fixed
    pool."""
    load_threshold: float | None = Field(None, alias="CONVOI_LOAD_THRESHOLD", gt=0)
    """Worker load (0-1) at which it stops taking calls; default 1.0 with the worker's own load
    (``CONVOI_MAX_CALLS``, ``CONVOI_CPU_BUDGET``), livekit-agents' 0.7 with ``machine`` load.
    ``inf`` never refuses and reports no load to LiveKit (single-worker devstacks and tests on
    busy machines)."""
    load: Literal["own", "machine"] = Field("own", alias="CONVOI_LOAD")
    """What the load counts: ``own`` (the worker's calls and its own processes' CPU; see
    docs/operations.md) or ``machine`` (livekit-agents' default: the whole machine's CPU)."""
    max_calls: int | None = Field(None, alias="CONVOI_MAX_CALLS", ge=1, le=1000)
    """Calls this worker conducts at once (``own`` load); default 8 per CPU."""
    cpu_budget: float = Field(0.9, alias="CONVOI_CPU_BUDGET", gt=0, le=1)
    """Share of the machine's CPUs the worker's own processes may use before it is full
    (``own`` load)."""
    process_init_timeout_seconds: float = Field(
        30.0, alias="CONVOI_PROCESS_INIT_TIMEOUT_SECONDS", ge=1, le=600
    )
    """How long a new job process may take to start (load silero's VAD, the definitions, the TLS
    context) before livekit-agents kills it; livekit's own 10 s default killed dozens of processes
    on a loaded 2-core machine during the soak, and each killed one was started again."""
    max_retry: int = Field(16, alias="CONVOI_MAX_RETRY", ge=0, le=100)
    """How many times the worker retries connecting to LiveKit before exiting non-zero."""

    web_join_timeout_seconds: float = Field(
        60.0, alias="CONVOI_WEB_JOIN_TIMEOUT_SECONDS", ge=5, le=3600
    )
    """A web call whose browser has not joined this long after the job started ends ``failed`` /
    ``participant_never_joined`` and frees its job process."""
    preemptive_tts: bool = Field(True, alias="CONVOI_PREEMPTIVE_TTS")
    """Synthesise a reply started before the caller's turn is confirmed (livekit's preemptive
    generation) right away, so its audio is ready when the turn ends; the TTS characters of a
    reply thrown away (the caller went on speaking) are billed. ``false``: LLM only."""

    turn_detection: Literal["model", "vad"] = Field("model", alias="CONVOI_TURN_DETECTION")
    """How the end of the caller's turn is decided: ``model`` (livekit's local audio end-of-turn
    model ``turn-detector-v1-mini`` on top of silero's VAD: a turn that sounds unfinished is
    held up to the maximum delay, so a caller who pauses mid-sentence is not cut off; its
    weights, ~244 MB, are loaded once per worker and shared by its calls) or ``vad`` (silence
    alone, then the minimum endpointing delay: ~250 MB less per worker, but the agent answers
    into pauses longer than about 0.6 s; see BENCHMARKS.md)."""
    min_endpointing_delay: float | None = Field(
        None, alias="CONVOI_MIN_ENDPOINTING_DELAY", ge=0, le=10
    )
    """Seconds of silence after speech before a turn may end; default livekit's (0.3 with
    ``model``, 0.5 with ``vad``)."""
    max_endpointing_delay: float | None = Field(
        None, alias="CONVOI_MAX_ENDPOINTING_DELAY", gt=0, le=30
    )
    """Longest wait for a turn the model finds unfinished; default 1.2 s with ``model`` (livekit's
    2.5 s held every such turn twice as long, for no fewer cut-ins), livekit's 3.0 with ``vad``."""
    vad_min_silence_seconds: float | None = Field(
        None, alias="CONVOI_VAD_MIN_SILENCE_SECONDS", gt=0, le=5
    )
    """Silence that ends speech for silero's VAD; default 0.3 s with ``model`` (the model guards
    the pauses), silero's 0.55 with ``vad``."""

    resume_apology: str = Field(
        "Sorry, I lost you for a moment.", alias="CONVOI_RESUME_APOLOGY", min_length=1
    )
    """What a resumed call says first, after its job died (see ``convoi.worker.resume``)."""
    max_resumes: int = Field(2, alias="CONVOI_MAX_RESUMES", ge=0, le=10)
    """Times one call may be resumed after its job died (then it ends ``failed`` /
    ``worker_error``); 0 turns resuming off."""

    console_call: Path | None = Field(None, alias="CONVOI_CONSOLE_CALL")
    """CallSpec JSON file for ``console`` mode (default: a web call to the first agent)."""

    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    """Chat-completions root, e.g. ``https://api.openai.com/v1`` (the default when unset)."""
    deepgram_api_key: SecretStr | None = Field(None, alias="DEEPGRAM_API_KEY")
    deepgram_base_url: str | None = Field(None, alias="DEEPGRAM_BASE_URL")
    """Full live-transcription URL, e.g. ``wss://api.deepgram.com/v1/listen`` (default when unset)."""
    eleven_api_key: SecretStr | None = Field(None, alias="ELEVEN_API_KEY")
    eleven_base_url: str | None = Field(None, alias="ELEVEN_BASE_URL")
    """ElevenLabs API root, e.g. ``https://api.elevenlabs.io/v1`` (default when unset)."""

    def missing_provider_keys(self) -> list[str]:
        """Names of provider key variables that are unset (a call cannot run without them)."""
        return [
            name
            for name, value in (
                ("OPENAI_API_KEY", self.openai_api_key),
                ("DEEPGRAM_API_KEY", self.deepgram_api_key),
                ("ELEVEN_API_KEY", self.eleven_api_key),
            )
            if value is None or not value.get_secret_value()
        ]
