"""Audio helpers shared by the provider emulators and the simulated caller.

Speech is real: espeak-ng (Debian package ``espeak-ng``) renders text to 16-bit mono PCM. Where
espeak-ng is missing, a tone whose length follows the text stands in, so nothing breaks, only
sounds less human.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import wave
from io import BytesIO

import numpy as np

__all__ = [
    "SPEECH_RMS_THRESHOLD",
    "espeak_available",
    "resample",
    "rms",
    "synthesize",
    "tone_for_text",
]

SPEECH_RMS_THRESHOLD = 300.0
"""RMS (int16 units) above which a 10-50 ms frame counts as speech energy."""


def espeak_available() -> bool:
    """True when the ``espeak-ng`` binary is on PATH."""
    return shutil.which("espeak-ng") is not None


def rms(pcm: bytes | np.ndarray) -> float:
    """Root-mean-square level of int16 PCM samples (0 for empty input)."""
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes | bytearray) else pcm
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling of int16 mono samples (good enough for test speech)."""
    if src_rate == dst_rate or samples.size == 0:
        return samples.astype(np.int16)
    n_out = round(samples.size * dst_rate / src_rate)
    x_old = np.linspace(0.0, 1.0, num=samples.size, endpoint=False)
    x_new = np.linspace(0.0, 1.0, num=n_out, endpoint=False)
    return np.interp(x_new, x_old, samples.astype(np.float64)).astype(np.int16)


def tone_for_text(text: str, sample_rate: int) -> np.ndarray:
    """A 440 Hz tone, 60 ms per character (at least 300 ms), at a speech-like level."""
    seconds = max(0.3, 0.06 * len(text))
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * 440.0 * t) * 6000).astype(np.int16)


@functools.lru_cache(maxsize=256)
def _espeak(text: str, voice: str, speed_wpm: int) -> tuple[int, bytes]:
    proc = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with wave.open(BytesIO(proc.stdout)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def synthesize(
    text: str, sample_rate: int, *, voice: str = "en-us", speed_wpm: int = 175
) -> np.ndarray:
    """Render ``text`` as int16 mono speech at ``sample_rate``.

    Uses espeak-ng when installed, else :func:`tone_for_text`. Results are cached per text.
    """
    text = text.strip()
    if not text:
        return np.zeros(0, dtype=np.int16)
    if not espeak_available():
        return tone_for_text(text, sample_rate)
    rate, raw = _espeak(text, voice, speed_wpm)
    return resample(np.frombuffer(raw, dtype=np.int16), rate, sample_rate)
