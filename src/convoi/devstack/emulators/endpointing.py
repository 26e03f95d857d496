"""Energy-based speech detection for the STT emulator.

Incoming int16 PCM is cut into fixed windows (``SttSettings.window_ms``). A window whose RMS
exceeds the threshold is *loud*. Loud windows separated by less than ``silence_ms`` of quiet
form one utterance; an utterance only counts (``start`` event) once it holds
``min_speech_ms`` of loud windows, so short blips are ignored. It ends (``end`` event) after
``silence_ms`` of quiet. While speech goes on, an ``interim`` event fires every
``interim_every_ms`` of audio. All times are seconds of audio since the detector was created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from convoi.devstack.audio import rms

from .scenario import SttSettings

__all__ = ["EnergyDetector", "SpeechMark"]


@dataclass(frozen=True)
class SpeechMark:
    """A detector event; ``start``/``end`` bound the loud audio of the utterance so far."""

    kind: Literal["start", "interim", "end"]
    start: float
    end: float


class EnergyDetector:
    """Feed PCM, get :class:`SpeechMark` events (see the module docstring)."""

    def __init__(self, sample_rate: int, settings: SttSettings, channels: int = 1) -> None:
        self._settings = settings
        self._rate = sample_rate
        self._channels = max(1, channels)
        self._win = max(1, sample_rate * settings.window_ms // 1000)
        self._win_s = self._win / sample_rate
        self._buf = bytearray()
        self._samples = 0  # per channel, processed so far
        self._phase: Literal["idle", "candidate", "speaking"] = "idle"
        self._start = 0.0
        self._last_loud_end = 0.0
        self._voiced_s = 0.0
        self._quiet_s = 0.0
        self._last_interim = 0.0

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio analysed so far (complete windows only)."""
        return self._samples / self._rate

    @property
    def speaking(self) -> bool:
        """True between a ``start`` and its ``end``."""
        return self._phase == "speaking"

    def feed(self, pcm: bytes) -> list[SpeechMark]:
        """Analyse more audio (any length) and return the events it produced, in order."""
        self._buf += pcm
        step = self._win * self._channels * 2
        marks: list[SpeechMark] = []
        while len(self._buf) >= step:
            window = np.frombuffer(bytes(self._buf[:step]), dtype=np.int16)
            del self._buf[:step]
            t0 = self._samples / self._rate
            self._samples += self._win
            mark = self._window(rms(window) > self._settings.threshold, t0, t0 + self._win_s)
            if mark is not None:
                marks.append(mark)
        return marks

    def finalize(self) -> SpeechMark | None:
        """End the current utterance now; returns its ``end`` event if speech was going on."""
        was_speaking = self._phase == "speaking"
        self._phase = "idle"
        if not was_speaking:
            return None
        return SpeechMark("end", self._start, self._last_loud_end)

    def _window(self, loud: bool, t0: float, t1: float) -> SpeechMark | None:
        s = self._settings
        if loud:
            self._quiet_s = 0.0
            self._last_loud_end = t1
            if self._phase == "idle":
                self._phase, self._start, self._voiced_s = "candidate", t0, 0.0
            self._voiced_s += self._win_s
            if self._phase == "candidate" and self._voiced_s * 1000 >= s.min_speech_ms:
                self._phase, self._last_interim = "speaking", t1
                return SpeechMark("start", self._start, t1)
            if self._phase == "speaking" and (t1 - self._last_interim) * 1000 >= (
                s.interim_every_ms
            ):
                self._last_interim = t1
                return SpeechMark("interim", self._start, t1)
            return None
        if self._phase == "idle":
            return None
        self._quiet_s += self._win_s
        if self._quiet_s * 1000 + 1e-6 < s.silence_ms:
            return None
        was_speaking = self._phase == "speaking"
        self._phase = "idle"
        return SpeechMark("end", self._start, self._last_loud_end) if was_speaking else None
