"""The aiohttp application serving all three emulators, and a helper to run it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import control, deepgram_stt, elevenlabs_tts, openai_llm
from .scenario import Scenario
from .state import STATE_KEY, EmulatorState

__all__ = ["RunningEmulators", "create_app", "running_emulators"]

logger = logging.getLogger("convoi.devstack.emulators")


def create_app(state: EmulatorState | None = None) -> web.Application:
    """Application with the OpenAI, Deepgram, ElevenLabs and control routes on one router."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state or EmulatorState()
    openai_llm.add_routes(app)
    deepgram_stt.add_routes(app)
    elevenlabs_tts.add_routes(app)
    control.add_routes(app)
    return app


@dataclass(frozen=True)
class RunningEmulators:
    """A started emulator server."""

    state: EmulatorState
    host: str
    port: int

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:18500``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``livekit.plugins.openai.LLM``."""
        return f"{self.url}/openai/v1"

    @property
    def deepgram_base_url(self) -> str:
        """``base_url`` for ``livekit.plugins.deepgram.STT`` (the full listen path)."""
        return f"{self.url}/deepgram/v1/listen"

    @property
    def elevenlabs_base_url(self) -> str:
        """``base_url`` for ``livekit.plugins.elevenlabs.TTS``."""
        return f"{self.url}/elevenlabs/v1"


@contextlib.asynccontextmanager
async def running_emulators(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    scenario: Scenario | None = None,
    record_file: Path | None = None,
) -> AsyncIterator[RunningEmulators]:
    """Serve the emulators on ``host:port`` (0 = a free port) for the ``async with`` body."""
    state = EmulatorState(scenario, record_file)
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    await site.start()
    bound_port = runner.addresses[0][1] if runner.addresses else port
    try:
        yield RunningEmulators(state, host, bound_port)
    finally:
        await runner.cleanup()
