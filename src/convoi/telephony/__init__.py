"""Telephony: outbound phone calls over LiveKit SIP (one home for everything SIP).

- :mod:`~convoi.telephony.outcomes`: dial failure → (status, ended_reason, fault, detail); pure.
- :mod:`~convoi.telephony.trunk`: trunk password from the environment, transport enum, names.
- :mod:`~convoi.telephony.dialer`: :func:`dial` (CreateSIPParticipant, wait for the answer) and
  :func:`hang_up`.
- :mod:`~convoi.telephony.provision`: idempotent ``convoi-<phone_number_id>`` outbound trunks
  (import it from its module; not re-exported here so ``python -m`` runs it cleanly).

:func:`dialer_for` picks the :class:`Dialer` for the worker's ``CONVOI_DIAL_MODE``::

    result = await dialer_for(settings.dial_mode)(ctx.api, phone=..., to_number=..., ...)
    if not result.answered:
        lifecycle.end(result.outcome.ended_reason, now, status=result.outcome.status,
                      fault=result.outcome.fault)

Dial modes live in :data:`dialers`. This package registers only ``sip`` (:func:`dial`, the
production one). Other modes are registered by whoever provides them with
:func:`register_dialer`; the devstack's ``participant`` mode (the "phone" is a LiveKit participant,
for machines without livekit-sip) is registered by ``convoi.devstack.participant_phone.register()``.
This package never imports the devstack.
"""

from __future__ import annotations

from typing import Final

from convoi.telephony.dialer import Dialer, DialResult, build_request, dial, hang_up
from convoi.telephony.outcomes import SIP_REASON_PHRASES, DialOutcome, dial_outcome
from convoi.telephony.trunk import TrunkConfigError, phone_identity, trunk_name, trunk_password

__all__ = [
    "SIP_DIAL_MODE",
    "SIP_REASON_PHRASES",
    "DialOutcome",
    "DialResult",
    "Dialer",
    "TrunkConfigError",
    "build_request",
    "dial",
    "dial_outcome",
    "dialer_for",
    "dialers",
    "hang_up",
    "phone_identity",
    "register_dialer",
    "trunk_name",
    "trunk_password",
]

SIP_DIAL_MODE: Final[str] = "sip"
"""The production dial mode: :func:`dial` through LiveKit SIP."""

dialers: dict[str, Dialer] = {SIP_DIAL_MODE: dial}
"""Dial mode (``CONVOI_DIAL_MODE``) → its dialer. Change it with :func:`register_dialer` only."""


def register_dialer(mode: str, dialer: Dialer) -> None:
    """Make ``dialer`` the dialer of ``mode`` in this process.

    Registering the same dialer again is harmless; giving a registered mode another dialer raises
    :class:`ValueError` (so nothing can quietly replace ``sip``).
    """
    current = dialers.get(mode)
    if current is not None and current is not dialer:
        raise ValueError(f"dial mode {mode!r} already has a dialer ({_name(current)})")
    dialers[mode] = dialer


def dialer_for(mode: str) -> Dialer:
    """The dialer registered for ``mode``: :func:`dial` for ``"sip"``.

    Raises :class:`ValueError` naming the registered modes when ``mode`` has none.
    """
    try:
        return dialers[mode]
    except KeyError:
        known = ", ".join(repr(m) for m in sorted(dialers))
        raise ValueError(
            f"unknown dial mode {mode!r} (registered: {known}; other modes must be registered "
            "with convoi.telephony.register_dialer first)"
        ) from None


def _name(dialer: Dialer) -> str:
    return f"{getattr(dialer, '__module__', '?')}.{getattr(dialer, '__qualname__', repr(dialer))}"
