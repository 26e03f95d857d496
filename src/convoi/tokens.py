"""LiveKit participant tokens: the one place a room-join JWT is minted.

Used by the control plane (the token a web call's browser receives) and by the devstack's
simulated caller.
"""

from __future__ import annotations

import datetime

from livekit import api

__all__ = ["ParticipantKind", "join_token"]

ParticipantKind = api.AccessToken.ParticipantKind
"""The participant kinds a token can carry: "standard", "egress", "ingress", "sip", "agent"."""


def join_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    *,
    name: str | None = None,
    ttl_seconds: int = 3600,
    kind: ParticipantKind | None = None,
    attributes: dict[str, str] | None = None,
) -> str:
    """A JWT that lets ``identity`` join ``room`` only, publishing and subscribing audio and data.

    ``kind`` sets the participant kind ("standard", "agent", "sip", ...).
    """
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(seconds=ttl_seconds))
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
            )
        )
    )
    if name:
        token = token.with_name(name)
    if kind:
        token = token.with_kind(kind)
    if attributes:
        token = token.with_attributes(attributes)
    return token.to_jwt()
