"""ElevenLabs voice names: friendly aliases for premade voices."""

from __future__ import annotations

__all__ = ["VOICE_ALIASES", "resolve_voice"]

VOICE_ALIASES: dict[str, str] = {
    "rachel": "21m00Tcm4TlvDq8ikWAM",
    "adam": "pNInz6obpgDQGcFmaJgB",
    "bella": "EXAVITQu4vr4xnAQs5B",
    "josh": "TxGEqnHWrfWFTfGW9XjX",
    "antoni": "ErXwobaYiN019PkySvjV",
    "elli": "MF3mGyEYCl7XYWbV9V6O",
}
"""Friendly names of ElevenLabs premade voices (as in the seed's ``"voice_id": "rachel"``).
Any other value is passed to ElevenLabs as a voice id unchanged."""


def resolve_voice(voice_id: str) -> str:
    """The ElevenLabs voice id for ``voice_id`` (aliases resolved, case-insensitively)."""
    return VOICE_ALIASES.get(voice_id.lower(), voice_id)
