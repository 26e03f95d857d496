"""The batched speaking-rate estimate gives livekit's figures, and livekit's stream uses it."""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.transcription._speaking_rate import SpeakingRateDetector

from convoi.worker import speaking_rate
from convoi.worker.speaking_rate import LIVEKIT_SPECTRAL_FLUX, spectral_flux


def _speechlike(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    syllables = (np.sin(2 * np.pi * 4.0 * t) > 0).astype(np.float64)  # 4 bursts a second
    tone = np.sin(2 * np.pi * 180.0 * t) + 0.4 * np.sin(2 * np.pi * 720.0 * t)
    noise = rng.normal(0.0, 0.05, t.size)
    return ((tone * syllables + noise) * 0.3).astype(np.float32)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("seed", [1, 2])
def test_same_figure_as_livekits_loop(sample_rate: int, seed: int) -> None:
    assert LIVEKIT_SPECTRAL_FLUX is not None, "livekit-agents' speaking-rate stream changed"
    audio = _speechlike(sample_rate, 1.0, seed)
    ours = spectral_flux(audio, sample_rate)
    from livekit.agents.voice.transcription._speaking_rate import SpeakingRateStream

    livekits = SimpleNamespace(_stft=functools.partial(SpeakingRateStream._stft, None))
    theirs = LIVEKIT_SPECTRAL_FLUX(livekits, audio, sample_rate)
    assert ours > 0
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_silence_and_too_short_audio() -> None:
    assert spectral_flux(np.zeros(24000, dtype=np.float32), 24000) == 0.0
    assert spectral_flux(np.ones(100, dtype=np.float32), 24000) == 0.0  # under two frames
    assert spectral_flux(np.ones(10, dtype=np.float32), 10) == 0.0  # a frame of no samples


def test_livekits_stream_estimates_with_it_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's events for real audio frames are the same before and after install."""
    from livekit.agents.voice.transcription import _speaking_rate as lk

    async def rates() -> list[float]:
        stream = SpeakingRateDetector().stream()
        audio = (_speechlike(24000, 2.0, 3) * 32767).astype(np.int16)
        for start in range(0, audio.size, 480):  # 20 ms frames, as a TTS sends them
            chunk = audio[start : start + 480]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), 24000, 1, chunk.size))
        stream.end_input()
        return [event.speaking_rate async for event in stream]

    monkeypatch.setattr(lk.SpeakingRateStream, "_spectral_flux", LIVEKIT_SPECTRAL_FLUX)
    before = asyncio.run(rates())
    assert speaking_rate.install()
    assert speaking_rate.install()  # idempotent
    assert lk.SpeakingRateStream._spectral_flux is not LIVEKIT_SPECTRAL_FLUX
    after = asyncio.run(rates())
    assert len(before) >= 10
    assert after == pytest.approx(before, rel=1e-9)
