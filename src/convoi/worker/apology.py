"""Never silent when the providers fail: a pre-rendered apology, then ``failed`` / ``provider_error``.

An agent's LLM, STT and TTS each run as a chain (the primary plugin and ``fallbacks``, see
:mod:`convoi.pipeline.factory`). A failing provider is skipped within seconds; when the last one of
a kind fails too, livekit reports an unrecoverable error. :class:`ProviderFaults` hears it, has the
agent say :data:`APOLOGY_TEXT` from audio rendered at build time (:data:`APOLOGY_WAV`, loaded once
per job process by :func:`load_apology`: it plays even with every TTS down), then asks the call to
end ``provider_error`` (status ``failed``, fault ``provider``).

The WAV is rendered by the devstack's espeak-ng (``python -m convoi.devstack.apology``) and ships in
the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.events import ErrorEvent

from convoi.lifecycle import EndedReason
from convoi.worker.log import logger

__all__ = [
    "APOLOGY_PLAYOUT_TIMEOUT",
    "APOLOGY_SAMPLE_RATE",
    "APOLOGY_TEXT",
    "APOLOGY_WAV",
    "ProviderFaults",
    "load_apology",
]

APOLOGY_TEXT = (
    "I'm sorry, I'm having technical difficulties and can't continue this call. "
    "Please try again later. Goodbye."
)
"""What the caller hears when every provider of a kind has failed."""
APOLOGY_WAV = Path(__file__).with_name("assets") / "apology.wav"
""":data:`APOLOGY_TEXT`, rendered at build time (mono, 16-bit, :data:`APOLOGY_SAMPLE_RATE`)."""
APOLOGY_SAMPLE_RATE = 24_000
APOLOGY_PLAYOUT_TIMEOUT = 15.0
"""Bound on playing the apology before the call ends anyway."""
_FRAME_MS = 20


def load_apology(path: Path = APOLOGY_WAV) -> tuple[rtc.AudioFrame, ...]:
    """The apology as 20 ms frames (empty when the WAV is missing: the call still ends)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels = w.getframerate(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError):
        logger.warning("no apology audio at %s: provider failures will end calls silently", path)
        return ()
    step = rate * _FRAME_MS // 1000 * channels * 2
    return tuple(
        rtc.AudioFrame(pcm[i : i + step], rate, channels, len(pcm[i : i + step]) // (2 * channels))
        for i in range(0, len(pcm), step)
    )


class EndForProvider(Protocol):
    """``Call.end_soon`` as :class:`ProviderFaults` uses it."""

    def __call__(self, reason: EndedReason, *, detail: str | None = ...) -> object: ...


class ProviderFaults:
    """Watches one session's errors; on the first unrecoverable one, apologises and ends."""

    def __init__(
        self,
        session: AgentSession[Any],
        apology: Sequence[rtc.AudioFrame],
        end_soon: EndForProvider,
        *,
        log_fields: dict[str, Any] | None = None,
    ) -> None:
        self._session = session
        self._apology = apology
        self._end_soon = end_soon
        self._fields = log_fields or {}
        self._task: asyncio.Task[None] | None = None
        self.failed_kind: str | None = None
        """``llm`` / ``stt`` / ``tts``: the kind whose providers all failed (None so far)."""
        session.on("error", self._on_error)

    def _on_error(self, event: ErrorEvent) -> None:
        error = event.error
        if getattr(error, "recoverable", True) or self._task is not None:
            return  # a retry or a fallback is still coming; or we are already ending
        kind = str(getattr(error, "type", "provider")).removesuffix("_error")
        self.failed_kind = kind
        logger.error(
            "every %s provider failed: apologising, then ending the call",
            kind,
            extra={**self._fields, "error": type(getattr(error, "error", error)).__name__},
        )
        self._task = asyncio.create_task(self._apologise(kind), name="convoi-apology")

    async def _apologise(self, kind: str) -> None:
        try:
            if self._apology:
                handle = self._session.say(
                    APOLOGY_TEXT, audio=self._frames(), allow_interruptions=False
                )
                await asyncio.wait_for(handle.wait_for_playout(), APOLOGY_PLAYOUT_TIMEOUT)
        except Exception:
            logger.warning("the apology could not be played", extra=self._fields, exc_info=True)
        self._end_soon("provider_error", detail=f"every {kind} provider failed")

    async def _frames(self) -> AsyncIterator[rtc.AudioFrame]:
        for frame in self._apology:
            yield frame

    def stop(self) -> None:
        """The call is ending: stop apologising (an apology already decided ends it anyway)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):
                self._task.cancel()
