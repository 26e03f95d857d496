"""ElevenLabs voice names (the table and the rule live in :mod:`convoi.definitions.voices`)."""

from __future__ import annotations

from convoi.definitions.voices import VOICE_ALIASES, resolve_voice

__all__ = ["VOICE_ALIASES", "resolve_voice"]
