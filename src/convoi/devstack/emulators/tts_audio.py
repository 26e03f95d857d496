"""Rendering and encoding audio for the ElevenLabs emulator.

``output_format`` values: ``pcm_<rate>`` is raw int16 LE mono; ``mp3_<rate>[_<kbps>]`` is a
continuous MP3 stream per :class:`Mp3Encoder` (one libmp3lame encoder per TTS context, so the
client's decoder sees one stream, not a file per sentence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import av
import numpy as np

from convoi.devstack.audio import synthesize, tone_for_text

from .scenario import TtsSettings

__all__ = [
    "AudioFormat",
    "ChunkEncoder",
    "Mp3Encoder",
    "PcmEncoder",
    "make_encoder",
    "parse_output_format",
    "render",
]

_MP3_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}


@dataclass(frozen=True)
class AudioFormat:
    """A parsed ``output_format``."""

    codec: Literal["pcm", "mp3"]
    sample_rate: int
    bitrate: int

    @property
    def mime_type(self) -> str:
        """Content-Type of the HTTP response body."""
        return "audio/mpeg" if self.codec == "mp3" else "audio/pcm"


def parse_output_format(value: str) -> AudioFormat:
    """Parse ``pcm_24000`` / ``mp3_22050_32`` / ``mp3_44100``; ValueError when unsupported."""
    parts = value.split("_")
    try:
        rate = int(parts[1])
        kbps = int(parts[2]) if len(parts) > 2 else 128
    except (IndexError, ValueError):
        raise ValueError(f"unsupported output_format {value!r}") from None
    if parts[0] == "pcm" and len(parts) == 2 and 8000 <= rate <= 48000:
        return AudioFormat("pcm", rate, rate * 16)
    if parts[0] == "mp3" and rate in _MP3_RATES:
        return AudioFormat("mp3", rate, kbps * 1000)
    raise ValueError(f"unsupported output_format {value!r} (emulator: pcm_* and mp3_* only)")


def render(text: str, sample_rate: int, settings: TtsSettings) -> np.ndarray:
    """int16 mono audio for ``text``: espeak-ng speech, or a tone in ``tone`` mode."""
    text = text.strip()
    if not text:
        return np.zeros(0, dtype=np.int16)
    if settings.mode == "tone":
        return tone_for_text(text, sample_rate)
    return synthesize(text, sample_rate, voice=settings.voice, speed_wpm=settings.speed_wpm)


class ChunkEncoder(Protocol):
    """Turns int16 samples into bytes of the output format, as one continuous stream."""

    def encode(self, samples: np.ndarray) -> bytes:
        """Encode more samples; may return b"" while the encoder buffers."""
        ...

    def flush(self) -> bytes:
        """Encode whatever is buffered and end the stream."""
        ...


class PcmEncoder:
    """Raw int16 little-endian mono."""

    def encode(self, samples: np.ndarray) -> bytes:
        """The samples' bytes."""
        return samples.astype("<i2").tobytes()

    def flush(self) -> bytes:
        """Nothing is buffered."""
        return b""


class Mp3Encoder:
    """One libmp3lame encoder: every call's output continues the same MP3 stream."""

    def __init__(self, sample_rate: int, bitrate: int) -> None:
        ctx = av.CodecContext.create("libmp3lame", "w")
        ctx.sample_rate = sample_rate
        ctx.layout = "mono"
        ctx.format = "s16p"
        ctx.bit_rate = bitrate
        ctx.open()
        self._ctx = ctx
        self._rate = sample_rate
        self._frame = ctx.frame_size or 1152
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def _encode_frame(self, samples: np.ndarray | None) -> bytes:
        if samples is None:
            return b"".join(bytes(p) for p in self._ctx.encode(None))
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.int16), format="s16p", layout="mono"
        )
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += samples.size
        return b"".join(bytes(p) for p in self._ctx.encode(frame))

    def encode(self, samples: np.ndarray) -> bytes:
        """Encode whole MP3 frames; the remainder waits for more samples or :meth:`flush`."""
        self._pending = np.concatenate([self._pending, samples.astype(np.int16)])
        out = bytearray()
        while self._pending.size >= self._frame:
            out += self._encode_frame(self._pending[: self._frame])
            self._pending = self._pending[self._frame :]
        return bytes(out)

    def flush(self) -> bytes:
        """Pad the last frame with silence, drain the encoder."""
        out = bytearray()
        if self._pending.size:
            pad = np.zeros(self._frame - self._pending.size, dtype=np.int16)
            out += self._encode_frame(np.concatenate([self._pending, pad]))
            self._pending = np.zeros(0, dtype=np.int16)
        out += self._encode_frame(None)
        return bytes(out)


def make_encoder(fmt: AudioFormat) -> ChunkEncoder:
    """A fresh encoder for one TTS context / HTTP response."""
    if fmt.codec == "mp3":
        return Mp3Encoder(fmt.sample_rate, fmt.bitrate)
    return PcmEncoder()
