"""The greeting, synthesised before anyone can hear it: while a phone rings, while a browser joins.

A call's greeting text is known at dispatch (the rendered ``first_message``), so its audio can be
ready by the time the callee answers or joins: it then plays the moment the agent's audio track
is subscribed, with no TTS request on the path. :class:`GreetingRender` runs that synthesis in the
background; :func:`trim_leading_silence` drops the near-silent frames a TTS engine puts before
the first word, so what the callee hears first is the greeting, not a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import tts

from convoi.worker.log import logger
from convoi.worker.turn_timing import mark

__all__ = ["GREETING_GRACE_SECONDS", "SILENCE_PEAK", "GreetingRender", "trim_leading_silence"]

GREETING_GRACE_SECONDS = 2.0
"""How long a callee who answered or joined waits for a greeting still being rendered before
it is spoken live instead."""
SILENCE_PEAK = 64
"""A frame whose peak sample (16-bit PCM) stays below this (about -54 dBFS) is silence."""


def trim_leading_silence(frames: Sequence[rtc.AudioFrame]) -> list[rtc.AudioFrame]:
    """``frames`` without the silent frames before the first audible one (one silent frame is
    kept before it, so the first word's onset is never clipped). All silent: unchanged. Pure."""
    for index, frame in enumerate(frames):
        if _loud(frame):
            return list(frames[max(0, index - 1) :])
    return list(frames)


class GreetingRender:
    """The greeting's synthesis, started at once in the background; its frames are kept as they
    arrive, so it can start playing at its first audible frame while the rest is still coming."""

    def __init__(self, engine: tts.TTS[Any] | None, text: str | None) -> None:
        self.text = text or ""
        self._frames: list[rtc.AudioFrame] = []
        self._audible = False  # leading silence is dropped as it arrives (one frame kept)
        self._changed = asyncio.Event()
        self._done = False
        self._task: asyncio.Task[None] | None = None
        if self.text and engine is not None:
            self._task = asyncio.create_task(self._render(engine), name="convoi-greeting-tts")
            self._task.add_done_callback(_retrieved)

    async def _render(self, engine: tts.TTS[Any]) -> None:
        try:
            async with engine.synthesize(self.text) as stream:
                async for event in stream:
                    self._keep(event.frame)
        finally:
            self._done = True
            self._changed.set()

    def _keep(self, frame: rtc.AudioFrame) -> None:
        if not self._audible:
            self._audible = _loud(frame)
            if not self._audible:
                self._frames[:] = [frame]  # the one silent frame before the first word
                return
        self._frames.append(frame)
        self._changed.set()

    async def collect(self, log_fields: Mapping[str, Any]) -> AsyncIterator[rtc.AudioFrame] | None:
        """The greeting's audio as it renders, once its first audible frame is there (waiting up
        to :data:`GREETING_GRACE_SECONDS`); None when there is none or it failed before a word
        (then it is spoken live)."""
        task = self._task
        if task is None:
            return None
        try:
            await asyncio.wait_for(self._first_word(), timeout=GREETING_GRACE_SECONDS)
        except TimeoutError:
            task.cancel()
            logger.warning("greeting not pre-rendered in time; speaking it live", extra=log_fields)
            return None
        if not self._audible:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # its error, if any, is what the warning says
            error = task.exception() if task.done() and not task.cancelled() else None
            logger.warning(
                "could not pre-render the greeting: %s",
                error or "no audio",
                extra=dict(log_fields),
            )
            return None
        return self._play()

    async def _first_word(self) -> None:
        while not self._audible and not self._done:
            self._changed.clear()
            await self._changed.wait()

    async def _play(self) -> AsyncIterator[rtc.AudioFrame]:
        """Every kept frame, then each one as it arrives, until the synthesis is over."""
        sent = 0
        while True:
            while sent < len(self._frames):
                if sent == 0:
                    mark("greeting_first_frame")
                yield self._frames[sent]
                sent += 1
            if self._done:
                return
            self._changed.clear()
            await self._changed.wait()

    def cancel(self) -> None:
        """Stop rendering (the call ended before anyone could hear it)."""
        if self._task is not None:
            self._task.cancel()


def _retrieved(task: asyncio.Task[None]) -> None:
    """A render that failed after its first words ends the greeting there (its stream stops)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("the pre-rendered greeting stopped early: %s", type(error).__name__)


def _loud(frame: rtc.AudioFrame) -> bool:
    samples = np.frombuffer(frame.data, dtype=np.int16)
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) >= SILENCE_PEAK
