"""The greeting synthesised ahead of time (convoi.worker.greeting_audio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from convoi.worker import greeting_audio
from convoi.worker.greeting_audio import SILENCE_PEAK, GreetingRender, trim_leading_silence

RATE = 24_000


def frame(peak: int, ms: int = 10) -> rtc.AudioFrame:
    samples = np.zeros(RATE * ms // 1000, dtype=np.int16)
    samples[len(samples) // 2] = peak
    return rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples))


def peaks(frames: list[rtc.AudioFrame]) -> list[int]:
    return [int(np.abs(np.frombuffer(f.data, dtype=np.int16)).max()) for f in frames]


def test_leading_silence_is_dropped_but_one_frame_before_the_first_word_stays() -> None:
    frames = [frame(0), frame(3), frame(SILENCE_PEAK - 1), frame(9000), frame(0), frame(4000)]
    assert peaks(trim_leading_silence(frames)) == [SILENCE_PEAK - 1, 9000, 0, 4000]


def test_audio_from_the_first_frame_and_all_silence_are_kept_whole() -> None:
    loud = [frame(5000), frame(0)]
    assert peaks(trim_leading_silence(loud)) == [5000, 0]
    quiet = [frame(0), frame(1)]
    assert peaks(trim_leading_silence(quiet)) == [0, 1]
    assert trim_leading_silence([]) == []


@dataclass
class Event:
    frame: rtc.AudioFrame


class FakeTTS:
    """Just enough of a livekit TTS for GreetingRender: ``synthesize(text)`` as a stream; with a
    ``gate``, the frames after the first wait until it opens."""

    def __init__(
        self,
        frames: list[rtc.AudioFrame],
        *,
        gate: asyncio.Event | None = None,
        hold_from: int = 0,
    ) -> None:
        self.frames, self.gate, self.hold_from, self.texts = frames, gate, hold_from, list[str]()

    def synthesize(self, text: str) -> Any:
        self.texts.append(text)
        return _Stream(self)


class _Stream:
    def __init__(self, engine: FakeTTS) -> None:
        self.engine = engine

    async def __aenter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def __aexit__(self, *_: object) -> None:
        return None

    async def _events(self) -> AsyncIterator[Event]:
        for index, f in enumerate(self.engine.frames):
            if index == self.engine.hold_from and self.engine.gate is not None:
                await self.engine.gate.wait()
            yield Event(f)


async def played(stream: AsyncIterator[rtc.AudioFrame] | None) -> list[rtc.AudioFrame]:
    assert stream is not None
    return [f async for f in stream]


async def test_the_greeting_renders_at_once_and_plays_trimmed() -> None:
    engine = FakeTTS([frame(0), frame(0), frame(0), frame(7000), frame(0), frame(3000)])
    render = GreetingRender(engine, "Hi Dana")  # type: ignore[arg-type]
    frames = await played(await render.collect({}))
    assert engine.texts == ["Hi Dana"]
    assert peaks(frames) == [0, 7000, 0, 3000]
    assert render.text == "Hi Dana"


async def test_it_plays_from_its_first_word_while_the_rest_still_renders() -> None:
    gate = asyncio.Event()
    engine = FakeTTS([frame(0), frame(8000), frame(6000), frame(5000)], gate=gate, hold_from=2)
    render = GreetingRender(engine, "Hi Dana, thanks for calling")  # type: ignore[arg-type]
    stream = await render.collect({})  # ready at the first word: frames 2 and 3 not rendered yet
    assert stream is not None
    first = [await anext(stream), await anext(stream)]
    assert peaks(first) == [0, 8000]
    rest = asyncio.ensure_future(played(stream))
    gate.set()
    assert peaks(await asyncio.wait_for(rest, 5)) == [6000, 5000]


async def test_no_text_or_no_engine_renders_nothing() -> None:
    assert await GreetingRender(None, "Hi").collect({}) is None
    engine = FakeTTS([frame(7000)])
    assert await GreetingRender(engine, None).collect({}) is None  # type: ignore[arg-type]
    assert engine.texts == []


async def test_a_greeting_not_ready_in_time_is_spoken_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(greeting_audio, "GREETING_GRACE_SECONDS", 0.05)
    engine = FakeTTS([frame(7000)], gate=asyncio.Event())  # never opens
    assert await GreetingRender(engine, "Hi").collect({}) is None  # type: ignore[arg-type]


class BrokenTTS(FakeTTS):
    def synthesize(self, text: str) -> Any:
        raise ConnectionError("tts down")


async def test_a_failed_or_silent_render_is_spoken_live() -> None:
    assert await GreetingRender(BrokenTTS([]), "Hi").collect({}) is None  # type: ignore[arg-type]
    silent = FakeTTS([frame(0), frame(1)])
    assert await GreetingRender(silent, "Hi").collect({}) is None  # type: ignore[arg-type]
