"""livekit's speaking-rate estimate for synchronised transcripts, computed without a Python loop.

livekit-agents paces the agent's transcript to its audio (``TranscriptSynchronizer``): every
agent audio frame goes through a speaking-rate stream that, for each 1 s window moved by 0.1 s,
takes a short-time Fourier transform with one ``numpy.fft.rfft`` call per 25 ms frame in a Python
loop (``SpeakingRateStream._spectral_flux``), on the call's event loop. That is 3–4 ms per window
here, 35 ms of CPU per second of agent speech, and when audio arrives faster than real time (a
pre-rendered greeting, a reply synthesised preemptively) the windows queue up and the loop is
blocked for 150–380 ms right as the audio starts playing (the "event loop blocked … in
_compute_speaking_rate" warnings), delaying the first frames the caller hears.

:func:`install` replaces that one method with :func:`spectral_flux`: the same frames, window,
scaling and flux, in one batched transform (about 0.5 ms per window, results identical). Nothing
else of livekit's synchroniser changes. Installed once per process, before any call.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from livekit.agents.voice.transcription import _speaking_rate

__all__ = ["LIVEKIT_SPECTRAL_FLUX", "install", "spectral_flux"]

FRAME_SECONDS = 0.025
"""livekit's STFT frame (25 ms, hop half a frame)."""

LIVEKIT_SPECTRAL_FLUX: Any = getattr(
    getattr(_speaking_rate, "SpeakingRateStream", None), "_spectral_flux", None
)
"""livekit's own method, as imported (before :func:`install`): the reference the tests compare
:func:`spectral_flux` with."""


@functools.lru_cache(maxsize=8)
def _window(frame_length: int) -> tuple[np.ndarray[Any, np.dtype[np.float64]], float]:
    window = np.hanning(frame_length)
    return window, 1.0 / float(np.sqrt(np.sum(window**2)))


def spectral_flux(audio: np.ndarray[Any, np.dtype[np.float32]], sample_rate: int) -> float:
    """The mean spectral flux of ``audio`` (mono float samples): livekit's speaking-rate figure,
    the L1 change of the scaled STFT magnitudes between consecutive 25 ms frames (hop 12.5 ms,
    Hann window). 0.0 for audio shorter than two frames. Pure."""
    frame_length = int(sample_rate * FRAME_SECONDS)
    hop = frame_length // 2
    if frame_length <= 0 or hop <= 0:
        return 0.0
    count = (len(audio) - frame_length) // hop + 1
    if count < 2:
        return 0.0
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame_length)[::hop][:count]
    window, scale = _window(frame_length)
    magnitudes = np.abs(np.fft.rfft(frames * window, axis=1) * scale)
    return float(np.mean(np.sum(np.abs(np.diff(magnitudes, axis=0)), axis=1)))


def _method(
    _stream: object, audio: np.ndarray[Any, np.dtype[np.float32]], sample_rate: int
) -> float:
    return spectral_flux(audio, sample_rate)


def install() -> bool:
    """Use :func:`spectral_flux` in livekit's speaking-rate stream (idempotent). False when this
    livekit-agents has no such method (then its own stays)."""
    stream = getattr(_speaking_rate, "SpeakingRateStream", None)
    if stream is None or not hasattr(stream, "_spectral_flux"):
        return False
    stream._spectral_flux = _method
    return True
