"""Participant tokens for the simulated caller."""

from __future__ import annotations

import warnings

from livekit import api

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
    kind: str | None = None,
    ttl_s: float = 3600.0,
    attributes: dict[str, str] | None = None,
) -> str:
    """A JWT that lets ``identity`` join ``room`` and publish/subscribe audio and data.

    ``kind`` sets the participant kind ("standard", "agent", "sip", ...): a test's stand-in agent
    uses ``kind="agent"`` so the caller recognises it.
    """
    import datetime

    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(seconds=ttl_s))
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
        token = token.with_kind(kind)  # type: ignore[arg-type]
    if attributes:
        token = token.with_attributes(attributes)
    with warnings.catch_warnings():
        # devstack secrets ("secret") are shorter than PyJWT's recommended HMAC key length
        warnings.filterwarnings("ignore", message=".*HMAC key.*")
        return token.to_jwt()
