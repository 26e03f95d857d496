"""Telephony: outbound phone calls over LiveKit SIP (one home for everything SIP).

- :mod:`~convoi.telephony.outcomes`: dial failure → (status, ended_reason, fault, detail); pure.
- :mod:`~convoi.telephony.trunk`: trunk password from the environment, transport enum, names.
- :mod:`~convoi.telephony.dialer`: :func:`dial` (CreateSIPParticipant, wait for the answer) and
  :func:`hang_up`.
- :mod:`~convoi.telephony.provision`: idempotent ``convoi-<phone_number_id>`` outbound trunks
  (import it from its module; not re-exported here so ``python -m`` runs it cleanly).

The worker dials with :func:`dial` (its :class:`Dialer` signature is the seam unit tests use)::

    result = await dial(ctx.api, phone=..., to_number=..., room=..., identity=..., ...)
    if not result.answered:
        lifecycle.end(result.outcome.ended_reason, now, status=result.outcome.status,
                      fault=result.outcome.fault)
"""

from __future__ import annotations

from convoi.telephony.dialer import Dialer, DialResult, build_request, dial, hang_up
from convoi.telephony.outcomes import SIP_REASON_PHRASES, DialOutcome, dial_outcome
from convoi.telephony.trunk import TrunkConfigError, phone_identity, trunk_name, trunk_password

__all__ = [
    "SIP_REASON_PHRASES",
    "DialOutcome",
    "DialResult",
    "Dialer",
    "TrunkConfigError",
    "build_request",
    "dial",
    "dial_outcome",
    "hang_up",
    "phone_identity",
    "trunk_name",
    "trunk_password",
]
