"""Render the worker's apology WAV with the devstack's espeak-ng (run at build time).

``python -m convoi.devstack.apology`` writes :data:`convoi.worker.apology.APOLOGY_WAV` from
:data:`convoi.worker.apology.APOLOGY_TEXT`. The WAV ships in the package, so the apology plays
when every TTS is down, and even when none was reachable at start-up.
"""

from __future__ import annotations

import wave
from pathlib import Path

from convoi.devstack.audio import synthesize
from convoi.worker.apology import APOLOGY_SAMPLE_RATE, APOLOGY_TEXT, APOLOGY_WAV

__all__ = ["render_apology"]


def render_apology(path: Path = APOLOGY_WAV) -> Path:
    """Synthesise :data:`APOLOGY_TEXT` into a mono 16-bit WAV at ``path``."""
    samples = synthesize(APOLOGY_TEXT, APOLOGY_SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(APOLOGY_SAMPLE_RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


if __name__ == "__main__":
    print(render_apology())
