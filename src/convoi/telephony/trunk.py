"""Shared pieces of a phone number's SIP trunk: password, transport, names, identities.

The trunk password is never stored in the definitions, only the *name* of the environment
variable holding it (``SipTrunk.auth_password_env``). :func:`trunk_password` reads it and fails
with :class:`TrunkConfigError` (a config fault, before anything is dialled) when it is missing.
Nothing here logs or formats a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

from livekit.protocol.sip import SIPTransport

from convoi.definitions.models import PhoneNumber, SipTrunk
from convoi.telephony.outcomes import DialOutcome

__all__ = [
    "PHONE_IDENTITY_PREFIX",
    "TRUNK_NAME_PREFIX",
    "TrunkConfigError",
    "mask_number",
    "phone_identity",
    "sip_transport",
    "trunk_name",
    "trunk_password",
]

TRUNK_NAME_PREFIX: Final[str] = "convoi-"
"""LiveKit outbound trunks provisioned by Convoi are named ``convoi-<phone_number_id>``."""
PHONE_IDENTITY_PREFIX: Final[str] = "phone-"
"""Room identity of the called phone: ``phone-<E.164 digits>``."""

_TRANSPORTS: Final[dict[str, SIPTransport]] = {
    "udp": SIPTransport.SIP_TRANSPORT_UDP,
    "tcp": SIPTransport.SIP_TRANSPORT_TCP,
    "tls": SIPTransport.SIP_TRANSPORT_TLS,
}


class TrunkConfigError(ValueError):
    """A phone number's trunk cannot be used as configured (e.g. its password variable is unset).

    Raised before dialling or provisioning. :attr:`outcome` is the matching call outcome
    (``failed`` / ``invalid_request`` / fault ``config``) for callers that report the call.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.outcome = DialOutcome("failed", "invalid_request", "config", message)


def trunk_password(
    phone: PhoneNumber, env: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(auth_username, auth_password)`` for ``phone``'s trunk, or ``None`` without auth.

    The password comes from the environment variable named by ``sip.auth_password_env``
    (``env`` defaults to ``os.environ``). Raises :class:`TrunkConfigError` when that variable is
    unset or empty. A username without a password variable yields ``(username, "")``.
    """
    sip: SipTrunk = phone.sip
    if sip.auth_password_env is None:
        return (sip.auth_username, "") if sip.auth_username else None
    source = os.environ if env is None else env
    password = source.get(sip.auth_password_env, "")
    if not password:
        raise TrunkConfigError(
            f"phone number {phone.id}: SIP trunk password variable "
            f"{sip.auth_password_env} is not set"
        )
    return sip.auth_username or "", password


def sip_transport(transport: str) -> SIPTransport:
    """The LiveKit enum for ``"udp"`` / ``"tcp"`` / ``"tls"``."""
    try:
        return _TRANSPORTS[transport]
    except KeyError:
        raise TrunkConfigError(f"unknown SIP transport {transport!r}") from None


def trunk_name(phone_number_id: str) -> str:
    """Name of the LiveKit outbound trunk provisioned for a phone number."""
    return f"{TRUNK_NAME_PREFIX}{phone_number_id}"


def phone_identity(e164: str) -> str:
    """Room identity of the called phone, ``phone-<digits>`` (``+15550000002`` →
    ``phone-15550000002``)."""
    digits = re.sub(r"\D", "", e164)
    if not digits:
        raise ValueError(f"not a phone number: {e164!r}")
    return f"{PHONE_IDENTITY_PREFIX}{digits}"


def mask_number(e164: str) -> str:
    """A phone number for logs: country-ish prefix and last 4 digits only (``+155…0002``)."""
    if len(e164) <= 7:
        return e164[:2] + "…"
    return f"{e164[:4]}…{e164[-4:]}"
