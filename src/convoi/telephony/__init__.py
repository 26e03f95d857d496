"""Telephony: outbound phone calls over LiveKit SIP (one home for everything SIP).

- :mod:`~convoi.telephony.outcomes`: dial failure → (status, ended_reason, fault, detail); pure.
- :mod:`~convoi.telephony.trunk`: trunk password from the environment, transport enum, names.
- :mod:`~convoi.telephony.dialer`: :func:`dial` (CreateSIPParticipant, wait for the answer) and
  :func:`hang_up`.
- :mod:`~convoi.telephony.provision`: idempotent ``convoi-<phone_number_id>`` outbound trunks
  (import it from its module; not re-exported here so ``python -m`` runs it cleanly).
- :mod:`~convoi.telephony.participant_stand_in`: devstack-only stand-in for the SIP leg.

:func:`dialer_for` picks the dialer for the worker's ``CONVOI_DIAL_MODE`` (``sip`` or
``participant``)::

    result = await dialer_for(settings.dial_mode)(ctx.api, phone=..., to_number=..., ...)
    if not result.answered:
        lifecycle.end(result.outcome.ended_reason, now, status=result.outcome.status,
                      fault=result.outcome.fault)
"""

from __future__ import annotations

from typing import Literal

from convoi.telephony.dialer import Dialer, DialResult, build_request, dial, hang_up
from convoi.telephony.outcomes import SIP_REASON_PHRASES, DialOutcome, dial_outcome
from convoi.telephony.participant_stand_in import dial_participant_stand_in
from convoi.telephony.trunk import TrunkConfigError, phone_identity, trunk_name, trunk_password

__all__ = [
    "SIP_REASON_PHRASES",
    "DialMode",
    "DialOutcome",
    "DialResult",
    "Dialer",
    "TrunkConfigError",
    "build_request",
    "dial",
    "dial_outcome",
    "dial_participant_stand_in",
    "dialer_for",
    "hang_up",
    "phone_identity",
    "trunk_name",
    "trunk_password",
]

DialMode = Literal["sip", "participant"]


def dialer_for(mode: DialMode | str) -> Dialer:
    """:func:`dial` for ``"sip"`` (production), the stand-in for ``"participant"`` (devstack)."""
    if mode == "sip":
        return dial
    if mode == "participant":
        return dial_participant_stand_in
    raise ValueError(f"unknown dial mode {mode!r} (expected 'sip' or 'participant')")
