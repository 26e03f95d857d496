"""The greeting, synthesised before anyone can hear it: while a phone rings, while a browser joins.

A call's greeting text is known at dispatch (the rendered ``first_message``), so its audio can be
ready by the time the callee answers or joins: it then plays the moment the agent's audio track
is subscribed, with no TTS request on the path. :class:`GreetingRender` runs that synthesis in the
background; :func:`trim_leading_silence` drops the near-silent frames a TTS engine puts before
the first word, so what the callee hears first is the greeting, not a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import tts

from convoi.agent import presynthesize
from convoi.worker.log import logger

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
        samples = np.frombuffer(frame.data, dtype=np.int16)
        if samples.size and int(np.abs(samples.astype(np.int32)).max()) >= SILENCE_PEAK:
            return list(frames[max(0, index - 1) :])
    return list(frames)


class GreetingRender:
    """The greeting's synthesis, started at once in the background."""

    def __init__(self, engine: tts.TTS[Any] | None, text: str | None) -> None:
        self.text = text or ""
        self._task: asyncio.Task[list[rtc.AudioFrame]] | None = (
            asyncio.create_task(presynthesize(engine, self.text), name="convoi-greeting-tts")
            if self.text and engine is not None
            else None
        )

    async def collect(self, log_fields: Mapping[str, Any]) -> list[rtc.AudioFrame] | None:
        """The rendered greeting (waiting up to :data:`GREETING_GRACE_SECONDS` for it), trimmed;
        None when there is none or it failed (then it is spoken live)."""
        task = self._task
        if task is None:
            return None
        try:
            frames = await asyncio.wait_for(asyncio.shield(task), timeout=GREETING_GRACE_SECONDS)
        except TimeoutError:
            task.cancel()
            logger.warning("greeting not pre-rendered in time; speaking it live", extra=log_fields)
        except Exception as exc:  # the live path will report provider errors properly
            logger.warning("could not pre-render the greeting: %s", exc, extra=dict(log_fields))
        else:
            return trim_leading_silence(frames) or None
        return None

    def cancel(self) -> None:
        """Stop rendering (the call ended before anyone could hear it)."""
        if self._task is not None:
            self._task.cancel()
