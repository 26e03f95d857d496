"""Participant tokens for the simulated caller."""

from __future__ import annotations

import warnings

from convoi.tokens import ParticipantKind, join_token

# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------


def caller_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str | None = None,
    *,
    kind: ParticipantKind | None = None,
    ttl_s: int = 3600,
    attributes: dict[str, str] | None = None,
) -> str:
    """A JWT that lets ``identity`` join ``room`` and publish/subscribe audio and data.

    ``kind`` sets the participant kind ("standard", "agent", "sip", ...): a test's stand-in agent
    uses ``kind="agent"`` so the caller recognises it.
    """
    with warnings.catch_warnings():
        # devstack secrets ("secret") are shorter than PyJWT's recommended HMAC key length
        warnings.filterwarnings("ignore", message=".*HMAC key.*")
        return join_token(
            api_key,
            api_secret,
            room,
            identity,
            name=name,
            ttl_seconds=ttl_s,
            kind=kind,
            attributes=attributes,
        )
