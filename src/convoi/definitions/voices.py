"""ElevenLabs voices: friendly aliases for premade voices, and which ``voice_id`` resolves.

A ``tts.voice_id`` resolves when it is one of :data:`VOICE_ALIASES` (any case) or has the shape of
an ElevenLabs voice id (20 ASCII letters and digits, the form of premade, cloned and library
voices alike). Anything else (``rachael``, ``voice_1``) is refused when the definitions load and
when a call is dispatched (:class:`~convoi.definitions.providers.ElevenLabsTTS` validates it), not
passed to ElevenLabs to fail mid-call. Pure: no I/O (whether the id exists on the account is only
known to ElevenLabs).
"""

from __future__ import annotations

import re

__all__ = ["VOICE_ALIASES", "resolve_voice", "voice_problem"]

VOICE_ALIASES: dict[str, str] = {
    "rachel": "21m00Tcm4TlvDq8ikWAM",
    "adam": "pNInz6obpgDQGcFmaJgB",
    "bella": "EXAVITQu4vr4xnSDxMaL",
    "josh": "TxGEqnHWrfWFTfGW9XjX",
    "antoni": "ErXwobaYiN019PkySvjV",
    "elli": "MF3mGyEYCl7XYWbV9V6O",
}
"""Friendly names of ElevenLabs premade voices (as in the seed's ``"voice_id": "rachel"``)."""

_VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")


def resolve_voice(voice_id: str) -> str:
    """The ElevenLabs voice id for ``voice_id`` (aliases resolved, case-insensitively)."""
    return VOICE_ALIASES.get(voice_id.lower(), voice_id)


def voice_problem(voice_id: str) -> str | None:
    """Why ``voice_id`` does not resolve to an ElevenLabs voice, or ``None`` when it does."""
    if voice_id.lower() in VOICE_ALIASES or _VOICE_ID.fullmatch(voice_id):
        return None
    return (
        f"unknown voice {voice_id!r}: use an ElevenLabs voice id (20 letters and digits) or one "
        f"of the names {', '.join(sorted(VOICE_ALIASES))}"
    )
