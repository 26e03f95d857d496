"""Identifiers minted by the control plane.

Call ids are ``call_`` + a ULID (26 Crockford base32 characters: 48-bit millisecond timestamp,
80 random bits), e.g. ``call_01HXJ5T0RZ7Q1V3W9M2K8B6N4D``: sortable by creation time and
unguessable. The call's LiveKit room is named after the call id.
"""

from __future__ import annotations

import re
import secrets
import time

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "new_api_key_id",
    "new_call_id",
    "new_participant_identity",
    "ulid",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ACCOUNT_ID_PATTERN = re.compile(r"acct_[a-z0-9][a-z0-9_-]{2,58}")
"""Account ids: ``acct_`` then 3-59 lowercase letters, digits, ``_`` or ``-`` (``acct_demo``)."""


def ulid(now: float | None = None) -> str:
    """A ULID string for ``now`` (default: the current time)."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_call_id() -> str:
    """``call_`` + ULID."""
    return f"call_{ulid()}"


def new_api_key_id() -> str:
    """Id of an API key row (not the key itself): ``key_`` + 24 hex digits."""
    return f"key_{secrets.token_hex(12)}"


def new_participant_identity() -> str:
    """LiveKit identity of a web call's participant: ``public-`` + 16 hex digits."""
    return f"public-{secrets.token_hex(8)}"
